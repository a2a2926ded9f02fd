"""The interface an ASR backend plugin implements, and the transcript types it produces.

A backend is registered through the ``lazyd_register_backends`` hook. The daemon never calls it on the
event loop: :meth:`Backend.load` and :meth:`LoadedModel.transcribe` run in a worker process that keeps
the model loaded between jobs. Import heavy libraries inside those methods, not at module level.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from .options import TranscribeOptions

if TYPE_CHECKING:
    import numpy

SAMPLE_RATE = 16_000
"""Backends receive mono float32 audio at this rate."""

DEVICE_PREFERENCE = ("cuda", "metal", "cpu")
"""When the configuration names no backend, the one with the best available device here wins."""


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float


def confidence(avg_logprob: float | None, no_speech_prob: float | None) -> float | None:
    """How sure the decoder was of a segment, from 0 to 1: the mean probability of its tokens
    (``exp(avg_logprob)``) times the probability that it is speech at all (``1 - no_speech_prob``).
    ``None`` when the backend gave neither figure. Clients mark text below about 0.5 as doubtful."""
    if avg_logprob is None and no_speech_prob is None:
        return None
    token_probability = math.exp(avg_logprob) if avg_logprob is not None else 1.0
    speech_probability = 1.0 - no_speech_prob if no_speech_prob is not None else 1.0
    return round(min(max(token_probability * speech_probability, 0.0), 1.0), 3)


@dataclass(frozen=True)
class DetectedLanguage:
    """The language a chunk was decoded in, as the backend detected it (or was told it)."""

    code: str
    """ISO 639-1, e.g. ``en``."""
    probability: float


@dataclass(frozen=True)
class Segment:
    """A stretch of recognised speech; times in seconds."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] | None = None
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    label: str = ""
    """A person's note on the segment (a speaker, "Question from the audience"); never from a backend."""

    @property
    def confidence(self) -> float | None:
        return confidence(self.avg_logprob, self.no_speech_prob)

    @property
    def shown_text(self) -> str:
        """The text as the text formats show it: after its label, in brackets, when it has one."""
        return f"[{self.label}] {self.text.strip()}" if self.label else self.text
    def shifted(self, offset: float) -> Segment:
        """The same segment with every time moved by ``offset`` seconds (chunk-relative to absolute)."""
        words = None if self.words is None else tuple(
            replace(word, start=word.start + offset, end=word.end + offset) for word in self.words)
        return replace(self, start=self.start + offset, end=self.end + offset, words=words)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.words is None:
            del data["words"]
        if not self.label:
            del data["label"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Segment:
        words = data.get("words")
        return cls(start=float(data["start"]), end=float(data["end"]), text=str(data["text"]),
                   words=None if words is None else tuple(Word(**word) for word in words),
                   avg_logprob=data.get("avg_logprob"), no_speech_prob=data.get("no_speech_prob"))


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load and how; chosen from the configuration and sent to the worker process."""

    model: str = ""
    """A model name or a path; "" means the backend's own default."""
    models_dir: str = ""
    """Where downloaded or user-provided models live."""
    device: str = "auto"
    """auto, cpu, cuda (or metal); auto picks the best the backend can use here."""
    compute_type: str = "auto"
    cpu_threads: int = 0
    """Threads for each decode running at once; 0 means the cores shared out among the ``parallel`` decodes."""
    parallel: int = 1
    """How many decodes the loaded model should be able to run at once (on CTranslate2, its inter-op
    workers: several decodes sharing one copy of the weights)."""


@dataclass(frozen=True)
class DeviceSupport:
    device: str
    available: bool
    reason: str


class LoadedModel(ABC):
    """A model loaded once in the worker process and reused for every chunk."""

    description: str = ""
    """What was loaded, for logs and ``/health``: model, device, compute type, threads."""
    parallel: int = 1
    """How many :meth:`transcribe` calls may run at once, each on its own thread; a backend that sets
    more than 1 keeps per-call state per thread (:meth:`detected_language` answers for the calling one)."""

    @abstractmethod
    def transcribe(self, audio: numpy.ndarray, options: TranscribeOptions) -> Iterator[Segment]:
        """Yield segments of ``audio`` (mono float32 at :data:`SAMPLE_RATE`) as they are decoded.

        Times are relative to the start of ``audio``. The generator is consumed lazily, so the caller can
        report progress and stop between segments.
        """

    def detected_language(self) -> DetectedLanguage | None:
        """The language the latest :meth:`transcribe` on this thread decoded in, once its segments have
        been consumed; ``None`` when the backend cannot tell (or there was no speech to tell from)."""
        return None


def english_only_error(model: str, cannot: str) -> ValueError:
    """What a backend raises for a job its English-only model cannot do (``cannot``: "translate", say)."""
    return ValueError(f"{model} is English-only; it cannot {cannot} (configure a multilingual model such as "
                      "'small' or 'large-v3')")


class Backend(ABC):
    """An ASR engine; instances must be cheap to create (no model loading, no heavy imports)."""

    name: ClassVar[str]
    default_model: ClassVar[str] = ""
    """The model an empty ``[transcription] model`` loads, by the name clients see (``/v1/models``)."""

    @abstractmethod
    def devices(self) -> list[DeviceSupport]:
        """Every device kind this backend supports and whether it can be used on this host, with why."""

    @abstractmethod
    def load(self, spec: ModelSpec) -> LoadedModel:
        """Load the model described by ``spec``; raise an exception that says what is missing on failure."""

    def best_device(self) -> str | None:
        available = {support.device for support in self.devices() if support.available}
        return next((device for device in DEVICE_PREFERENCE if device in available), None)
