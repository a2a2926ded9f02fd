"""The exporter interface: a transcript in, a file's bytes out.

An exporter plugin returns :class:`Exporter` instances from the ``lazyd_register_exporters`` hook. It
receives a :class:`Transcript` (everything lazyd knows about one transcription, already loaded) and
:class:`ExportOptions`, and renders bytes; a long transcript may be rendered piece by piece by overriding
:meth:`Exporter.stream`. Rendering runs in a thread, never on the event loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from .backend import Segment


@dataclass(frozen=True)
class TranscriptChunk:
    number: int
    start: float
    end: float
    text: str
    segments: tuple[Segment, ...] = ()
    language: str = ""
    """The language this chunk was decoded in ("" when the backend did not say)."""


@dataclass(frozen=True)
class Transcript:
    """One transcription with its finished chunks, in order."""

    id: int
    title: str
    """The recording's file name (or "Transcription N" when it had none)."""
    duration_secs: float
    created: datetime
    state: str
    model: str = ""
    language: str = ""
    """Detected over most of the audio, or the one the job asked for; "" when unknown."""
    language_probability: float | None = None
    chunks: tuple[TranscriptChunk, ...] = ()

    @property
    def segments(self) -> Iterator[Segment]:
        for chunk in self.chunks:
            yield from chunk.segments


@dataclass(frozen=True)
class ExportOptions:
    timestamps: bool = False
    """Plain-text formats: start each segment with its ``[hh:mm:ss]`` time."""
    max_cue_chars: int = 84
    """Subtitles: the longest cue, in characters (two lines of 42)."""
    max_cue_secs: float = 7.0
    """Subtitles: the longest cue, in seconds."""


class Exporter(ABC):
    name: ClassVar[str]
    """The format name used in URLs and on the command line, e.g. ``srt``."""
    media_type: ClassVar[str]
    suffix: ClassVar[str]
    """The file name extension, without the dot."""
    description: ClassVar[str] = ""

    @abstractmethod
    def render(self, transcript: Transcript, options: ExportOptions) -> bytes:
        """The whole file."""

    def stream(self, transcript: Transcript, options: ExportOptions) -> Iterator[bytes]:
        """The file in pieces; override for formats that can be written incrementally."""
        yield self.render(transcript, options)


class StreamingExporter(Exporter):
    """An exporter written piece by piece: implement :meth:`stream`, and :meth:`render` joins it."""

    @abstractmethod
    def stream(self, transcript: Transcript, options: ExportOptions) -> Iterator[bytes]:
        """The file in pieces, in order."""

    def render(self, transcript: Transcript, options: ExportOptions) -> bytes:
        return b"".join(self.stream(transcript, options))


@dataclass(frozen=True)
class Paragraph:
    start: float
    text: str


def language_label(transcript: Transcript) -> str:
    """``en`` or, when it was detected, ``en (detected, 97%)``: for the headers of documents."""
    if transcript.language_probability is None:
        return transcript.language
    return f"{transcript.language} (detected, {transcript.language_probability:.0%})"


def clock(seconds: float, separator: str = ".", millis: bool = False) -> str:
    """``hh:mm:ss``, optionally with milliseconds after ``separator``; hours keep counting past 24."""
    total_ms = max(0, round(seconds * 1000))
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{text}{separator}{ms:03d}" if millis else text


def paragraphs(transcript: Transcript, pause_secs: float = 2.0, max_sentences: int = 4) -> list[Paragraph]:
    """Segments grouped into paragraphs: a new one after a pause or after a few sentences."""
    result: list[Paragraph] = []
    current: list[str] = []
    start, last_end, sentences = 0.0, None, 0
    for segment in transcript.segments:
        text = segment.shown_text.strip()
        if not text:
            continue
        if current and (segment.start - last_end > pause_secs or sentences >= max_sentences):
            result.append(Paragraph(start, " ".join(current)))
            current, sentences = [], 0
        if not current:
            start = segment.start
        current.append(text)
        sentences += sum(text.count(mark) for mark in ".?!")
        last_end = segment.end
    if current:
        result.append(Paragraph(start, " ".join(current)))
    return result


@dataclass
class ExporterSet:
    """The exporters plugins registered, by name, with the seed's ``doc`` as an alias of ``docx``."""

    by_name: dict[str, Exporter] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=lambda: {"doc": "docx"})

    def get(self, name: str) -> Exporter | None:
        return self.by_name.get(self.aliases.get(name, name))

    def names(self) -> list[str]:
        return sorted(self.by_name) + sorted(alias for alias, target in self.aliases.items()
                                             if target in self.by_name)
