"""Subtitles: SubRip (.srt) and WebVTT (.vtt).

Segments become cues no longer than ``max_cue_chars`` characters and ``max_cue_secs`` seconds: a long
segment is split at word boundaries, using the word timestamps when the backend gave them and otherwise
sharing the segment's time out by length. Cues never overlap, never run backwards and never last zero time,
whatever the segments looked like.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass

from .. import hookimpl
from ..backend import Segment, Word
from ..exporters import ExportOptions, Exporter, StreamingExporter, Transcript, clock

MIN_CUE_SECS = 0.2
LINE_CHARS = 42


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


def cues(transcript: Transcript, options: ExportOptions) -> Iterator[Cue]:
    """Every cue in order, with times made monotonic and non-overlapping."""
    previous_end = 0.0
    for segment in transcript.segments:
        for piece in _split(segment, options):
            start = max(piece.start, previous_end)
            end = max(piece.end, start + MIN_CUE_SECS)
            previous_end = end
            yield Cue(start, end, piece.text)


def _split(segment: Segment, options: ExportOptions) -> list[Cue]:
    text = " ".join(segment.shown_text.split())
    if not text:
        return []
    words = [w for w in segment.words or () if w.word.strip()]
    if words and not segment.label:
        return _pack(words, options)
    return _pack(_spread(text.split(), segment.start, segment.end), options)


def _spread(tokens: list[str], start: float, end: float) -> list[Word]:
    """Words without timestamps: share the segment's time out in proportion to their length."""
    total = sum(len(token) + 1 for token in tokens)
    words, at = [], start
    for token in tokens:
        length = (end - start) * (len(token) + 1) / total
        words.append(Word(at, at + length, token, 1.0))
        at += length
    return words


def _pack(words: list[Word], options: ExportOptions) -> list[Cue]:
    """Greedily fill cues with whole words within the character and time limits."""
    result: list[Cue] = []
    current: list[Word] = []
    for word in words:
        candidate = current + [word]
        too_long = len(_join(candidate)) > options.max_cue_chars
        too_slow = candidate[-1].end - candidate[0].start > options.max_cue_secs
        if current and (too_long or too_slow):
            result.append(Cue(current[0].start, current[-1].end, _join(current)))
            current = [word]
        else:
            current = candidate
    if current:
        result.append(Cue(current[0].start, current[-1].end, _join(current)))
    return result


def _join(words: list[Word]) -> str:
    return " ".join(word.word.strip() for word in words)


def wrap(text: str, width: int = LINE_CHARS) -> str:
    """Two balanced lines when the text is longer than one line should be."""
    if len(text) <= width or " " not in text:
        return text
    middle = len(text) // 2
    spaces = [match.start() for match in re.finditer(" ", text)]
    cut = min(spaces, key=lambda position: abs(position - middle))
    return f"{text[:cut]}\n{text[cut + 1:]}"


class SrtExporter(StreamingExporter):
    name = "srt"
    media_type = "application/x-subrip; charset=utf-8"
    suffix = "srt"
    description = "SubRip subtitles"

    def stream(self, transcript: Transcript, options: ExportOptions) -> Iterator[bytes]:
        for number, cue in enumerate(cues(transcript, options), start=1):
            timing = f"{clock(cue.start, ',', True)} --> {clock(cue.end, ',', True)}"
            yield f"{number}\n{timing}\n{wrap(_srt_text(cue.text))}\n\n".encode("utf-8")


def _srt_text(text: str) -> str:
    """SubRip has no escapes: keep an arrow in speech from looking like a timing line."""
    return text.replace("-->", "→")


class VttExporter(StreamingExporter):
    name = "vtt"
    media_type = "text/vtt; charset=utf-8"
    suffix = "vtt"
    description = "WebVTT subtitles"

    def stream(self, transcript: Transcript, options: ExportOptions) -> Iterator[bytes]:
        yield b"WEBVTT\n\n"
        for cue in cues(transcript, options):
            timing = f"{clock(cue.start, '.', True)} --> {clock(cue.end, '.', True)}"
            yield f"{timing}\n{wrap(html.escape(cue.text, quote=False))}\n\n".encode("utf-8")


@hookimpl
def lazyd_register_exporters() -> list[Exporter]:
    return [SrtExporter(), VttExporter()]
