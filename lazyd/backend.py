"""The interface an ASR backend plugin implements, and the transcript types it produces.

A backend is registered through the ``lazyd_register_backends`` hook. The daemon never calls it on the
event loop: :meth:`Backend.load` and :meth:`LoadedModel.transcribe` run in a worker process that keeps
the model loaded between jobs. Import heavy libraries inside those methods, not at module level.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Segment:
    """A stretch of recognised speech; times in seconds."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] | None = None
    avg_logprob: float | None = None
    no_speech_prob: float | None = None

    def shifted(self, offset: float) -> Segment:
        """The same segment with every time moved by ``offset`` seconds (chunk-relative to absolute)."""
        words = None if self.words is None else tuple(
            replace(word, start=word.start + offset, end=word.end + offset) for word in self.words)
        return replace(self, start=self.start + offset, end=self.end + offset, words=words)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.words is None:
            del data["words"]
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
    """0 means one thread per core."""


@dataclass(frozen=True)
class DeviceSupport:
    device: str
    available: bool
    reason: str


class LoadedModel(ABC):
    """A model loaded once in the worker process and reused for every chunk."""

    description: str = ""
    """What was loaded, for logs and ``/health``: model, device, compute type, threads."""

    @abstractmethod
    def transcribe(self, audio: numpy.ndarray, options: TranscribeOptions) -> Iterator[Segment]:
        """Yield segments of ``audio`` (mono float32 at :data:`SAMPLE_RATE`) as they are decoded.

        Times are relative to the start of ``audio``. The generator is consumed lazily, so the caller can
        report progress and stop between segments.
        """


class Backend(ABC):
    """An ASR engine; instances must be cheap to create (no model loading, no heavy imports)."""

    name: ClassVar[str]

    @abstractmethod
    def devices(self) -> list[DeviceSupport]:
        """Every device kind this backend supports and whether it can be used on this host, with why."""

    @abstractmethod
    def load(self, spec: ModelSpec) -> LoadedModel:
        """Load the model described by ``spec``; raise an exception that says what is missing on failure."""

    def best_device(self) -> str | None:
        available = {support.device for support in self.devices() if support.available}
        return next((device for device in DEVICE_PREFERENCE if device in available), None)
