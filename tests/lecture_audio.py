"""Made-up lectures: piper speech paragraphs with long pauses of room noise, applause or music between.

Whisper invents text in such stretches; these files say exactly where the speech is, so a test can check
that every paragraph is transcribed and that no word is timed inside a pause. The pauses are made with
numpy from a fixed seed (sox is not on every machine lazyd is tested on, and numpy is already here), so
the same arguments always give the same samples. Files are cached like tests/speech.py's.
"""

from __future__ import annotations

import hashlib
import json
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy

import speech

PAUSE_KINDS = ("room", "applause", "music")

PARAGRAPHS = (  # no numbers: Whisper writes them as digits, which the word error rate would count
    "Good morning everyone. Today we start the chapter on heat engines. A heat engine takes heat from a hot "
    "reservoir, turns part of it into work, and gives the rest to a cold reservoir.",
    "Now please take a few minutes and work through the first exercise on your sheet. Compute the "
    "efficiency of an engine that runs between a hot boiler and a cold river.",
    "Welcome back. The efficiency of an ideal engine depends only on the temperatures of the two "
    "reservoirs, and no real engine can do better than that limit.",
    "That is all for today. Next week we will look at refrigerators and heat pumps, which run the same "
    "cycle backwards.",
)


@dataclass(frozen=True)
class Lecture:
    path: Path
    paragraphs: tuple[str, ...]
    speech: tuple[tuple[float, float], ...]
    """Where each paragraph is spoken, in seconds."""
    pauses: tuple[tuple[float, float, str], ...]
    """Each pause: start, end and kind."""

    @property
    def duration(self) -> float:
        return max(self.speech[-1][1], self.pauses[-1][1] if self.pauses else 0.0)


def made_up_lecture(cache_dir: Path, pauses: Sequence[tuple[str, float]],
                    paragraphs: Sequence[str] = PARAGRAPHS) -> Lecture:
    """The paragraphs spoken in turn with ``pauses[i]`` (kind, seconds) after paragraph ``i``; the file and
    where its speech lies are cached together."""
    assert len(pauses) == len(paragraphs) - 1 and all(kind in PAUSE_KINDS for kind, _ in pauses)
    key = _key(["lecture", list(paragraphs), [list(pause) for pause in pauses]])
    path = Path(cache_dir) / f"lecture-{key}.wav"
    layout = path.with_suffix(".json")
    if not (path.exists() and layout.exists()):
        _make_lecture(path, layout, pauses, paragraphs)
    spans = json.loads(layout.read_text())
    return Lecture(path, tuple(paragraphs), tuple(map(tuple, spans["speech"])), tuple(map(tuple, spans["pauses"])))


def _make_lecture(path: Path, layout: Path, pauses: Sequence[tuple[str, float]], paragraphs: Sequence[str]) -> None:
    rate = speech.voice().config.sample_rate
    parts, spans, gaps, at = [], [], [], 0.0
    for number, text in enumerate(paragraphs):
        spoken = _speech_samples(text)
        spans.append((at, at + len(spoken) / rate))
        parts.append(spoken)
        at += len(spoken) / rate
        if number < len(pauses):
            kind, seconds = pauses[number]
            parts.append(pause_samples(kind, seconds, rate, seed=number))
            gaps.append((at, at + seconds, kind))
            at += seconds
    _write(path, numpy.concatenate(parts), rate)
    layout.write_text(json.dumps({"speech": spans, "pauses": gaps}))


def noise_only_file(cache_dir: Path, seconds: float = 120.0) -> Path:
    """Two minutes of the pauses alone: room noise, applause and music in turn, no word spoken."""
    rate = speech.voice().config.sample_rate
    path = Path(cache_dir) / f"noise-{_key(['noise', seconds])}.wav"
    if not path.exists():
        third = seconds / 3
        _write(path, numpy.concatenate([pause_samples(kind, third, rate, seed=7) for kind in PAUSE_KINDS]), rate)
    return path


def pause_samples(kind: str, seconds: float, rate: int, seed: int) -> numpy.ndarray:
    """``seconds`` of one kind of non-speech at ``rate``, as float32 in [-1, 1]."""
    rng = numpy.random.default_rng(seed)
    count = round(seconds * rate)
    if kind == "room":
        return _room_noise(rng, count)
    if kind == "applause":
        return _applause(rng, count, rate)
    return _music(count, rate)


def _room_noise(rng: numpy.random.Generator, count: int) -> numpy.ndarray:
    """Quiet pink-ish noise (about -45 dBFS): ventilation, a projector fan, people shifting in seats."""
    white = rng.standard_normal(count)
    pinkish = numpy.cumsum(white) * 0.02
    pinkish -= numpy.convolve(pinkish, numpy.ones(400) / 400, mode="same")  # no drift: a hum, not a wander
    return (0.006 * white + 0.004 * pinkish / (numpy.abs(pinkish).max() or 1)).astype(numpy.float32)


def _applause(rng: numpy.random.Generator, count: int, rate: int) -> numpy.ndarray:
    """Many hand claps: short bursts of noise with a fast decay, dense at first and thinning out."""
    out = numpy.zeros(count)
    clap_length = int(0.03 * rate)
    envelope = numpy.exp(-numpy.arange(clap_length) / (0.006 * rate))
    claps = int(count / rate * 40)
    starts = numpy.sort(rng.integers(0, max(count - clap_length, 1), claps))
    for start in starts:
        out[start:start + clap_length] += rng.standard_normal(clap_length) * envelope * rng.uniform(0.05, 0.3)
    fade = numpy.linspace(1.0, 0.3, count)
    return numpy.clip(out * fade, -1, 1).astype(numpy.float32)


def _music(count: int, rate: int) -> numpy.ndarray:
    """Music-like tones: a chord that changes every half second, with a soft attack and a decay."""
    chords = ((261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6), (196.0, 246.9, 293.7))
    step = rate // 2
    time = numpy.arange(step) / rate
    envelope = numpy.minimum(time / 0.02, 1.0) * numpy.exp(-time * 3)
    pieces = []
    for number in range(count // step + 1):
        chord = chords[number % len(chords)]
        pieces.append(sum(numpy.sin(2 * numpy.pi * frequency * time) for frequency in chord) * envelope * 0.1)
    return numpy.concatenate(pieces)[:count].astype(numpy.float32)


def _speech_samples(text: str) -> numpy.ndarray:
    voice = speech.voice()
    pcm = b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(text, syn_config=speech._config()))
    return numpy.frombuffer(pcm, dtype=numpy.int16).astype(numpy.float32) / 32768


def _write(path: Path, samples: numpy.ndarray, rate: int) -> None:
    pcm = (numpy.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with wave.open(str(partial), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    partial.replace(path)


def _key(parts: list) -> str:
    payload = json.dumps([parts, speech._key("lecture", [], 0.0)])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
