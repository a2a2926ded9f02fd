"""Every built-in exporter on a transcript with awkward content, checked with independent parsers."""

from __future__ import annotations

import dataclasses
import html
import io
import json
from datetime import datetime

import docx
import pytest
import srt
import webvtt

from lazyd.backend import Segment, Word
from lazyd.exporters import ExportOptions, Transcript, TranscriptChunk, clock
from lazyd.registry import load_registry

HOUR = 3600.0


def _words(text: str, start: float, end: float) -> tuple[Word, ...]:
    tokens = text.split()
    step = (end - start) / len(tokens)
    return tuple(Word(start + n * step, start + (n + 1) * step, token, 0.9) for n, token in enumerate(tokens))


LONG = ("Entropy is a measure of the number of microscopic configurations that correspond to a macroscopic "
        "state, and for an isolated system it never decreases, which is the content of the second law of "
        "thermodynamics as Clausius stated it in eighteen sixty five.")

SEGMENTS_0 = (
    Segment(0.0, 2.0, "Welcome to thermodynamics."),
    Segment(2.0, 2.0, ""),
    Segment(2.5, 2.5, "Zero length."),
    Segment(3.0, 6.0, "The arrow --> points <b>forward</b> & back."),
    Segment(5.0, 8.0, "Overlapping: Schrödinger's Katze, ΔS ≥ 0, 熵."),
)
SEGMENTS_1 = (
    Segment(10.0, 50.0, LONG, words=_words(LONG, 10.0, 50.0)),
    Segment(50.0, 70.0, LONG),
)
SEGMENTS_2 = (Segment(3 * HOUR + 5.25, 3 * HOUR + 9.5, "Three hours in, the last sentence."),)


@pytest.fixture
def transcript() -> Transcript:
    chunks = (
        TranscriptChunk(0, 0.0, 9.0, " ".join(s.text for s in SEGMENTS_0 if s.text), SEGMENTS_0),
        TranscriptChunk(1, 9.0, 3 * HOUR, f"{LONG} {LONG}", SEGMENTS_1),
        TranscriptChunk(2, 3 * HOUR, 3 * HOUR + 10, SEGMENTS_2[0].text, SEGMENTS_2),
    )
    return Transcript(id=7, title="Lecture 3 — Entropy.m4a", duration_secs=3 * HOUR + 10,
                      created=datetime(2026, 11, 29, 9, 30), state="completed",
                      model="faster-whisper tiny.en", language="en", chunks=chunks)


@pytest.fixture(scope="module")
def exporters():
    return load_registry(load_entrypoints=False).exporters


def _spoken(transcript: Transcript) -> list[str]:
    return [" ".join(s.text.split()) for s in transcript.segments if s.text.strip()]


def _words_of(texts) -> list[str]:
    return " ".join(texts).split()


def test_txt_is_byte_identical_to_the_seeds_join_of_chunk_texts(transcript, exporters):
    rendered = exporters.get("txt").render(transcript, ExportOptions())
    assert rendered == "\n\n".join(chunk.text for chunk in transcript.chunks).encode("utf-8")


def test_txt_with_timestamps_starts_each_segment_with_its_time(transcript, exporters):
    lines = exporters.get("txt").render(transcript, ExportOptions(timestamps=True)).decode().splitlines()
    assert lines[0] == "[00:00:00] Welcome to thermodynamics."
    assert lines[-1] == "[03:00:05] Three hours in, the last sentence."
    assert len(lines) == len(_spoken(transcript))


@pytest.mark.parametrize("limits", [ExportOptions(), ExportOptions(max_cue_chars=30, max_cue_secs=3.0)])
def test_srt_parses_with_an_independent_parser_and_keeps_every_word(transcript, exporters, limits):
    text = exporters.get("srt").render(transcript, limits).decode("utf-8")
    cues = list(srt.parse(text))
    assert [cue.index for cue in cues] == list(range(1, len(cues) + 1))
    _assert_cues_sane([(c.start.total_seconds(), c.end.total_seconds(), c.content) for c in cues], limits)
    spoken = [s.replace("-->", "→") for s in _spoken(transcript)]
    assert _words_of(cue.content for cue in cues) == _words_of(spoken)
    assert cues[-1].end.total_seconds() == pytest.approx(3 * HOUR + 9.5)


@pytest.mark.parametrize("limits", [ExportOptions(), ExportOptions(max_cue_chars=30, max_cue_secs=3.0)])
def test_vtt_parses_with_an_independent_parser_and_escapes_markup(transcript, exporters, limits):
    text = exporters.get("vtt").render(transcript, limits).decode("utf-8")
    assert text.startswith("WEBVTT\n\n")
    assert "<b>" not in text and "&lt;b&gt;" in text
    cues = webvtt.from_buffer(io.StringIO(text)).captions
    _assert_cues_sane([(_secs(c.start), _secs(c.end), html.unescape(c.raw_text)) for c in cues], limits)
    assert _words_of(html.unescape(c.raw_text) for c in cues) == _words_of(_spoken(transcript))


def _secs(stamp: str) -> float:
    hours, minutes, seconds = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _assert_cues_sane(cues: list[tuple[float, float, str]], limits: ExportOptions) -> None:
    previous_end = 0.0
    for start, end, content in cues:
        assert start >= previous_end - 1e-6, "cues overlap or run backwards"
        assert end > start, "a cue lasts no time"
        flat = content.replace("\n", " ")
        assert len(flat) <= limits.max_cue_chars or " " not in flat
        assert end - start <= limits.max_cue_secs + 0.001 or " " not in flat, f"a {end - start:.1f} s cue"
        assert content.count("\n") <= 1
        previous_end = end


def test_docx_opens_and_holds_every_segment_in_order(transcript, exporters):
    data = exporters.get("docx").render(transcript, ExportOptions())
    document = docx.Document(io.BytesIO(data))
    texts = [paragraph.text for paragraph in document.paragraphs]
    assert texts[0] == "Lecture 3 — Entropy.m4a"
    assert "Duration: 03:00:10" in texts[1] and "faster-whisper tiny.en" in texts[1]
    assert "Language: en" in texts[1].splitlines()
    body = " ".join(texts[2:])
    position = 0
    for spoken in _spoken(transcript):
        found = body.find(spoken, position)
        assert found >= 0, f"missing or out of order: {spoken!r}"
        position = found + len(spoken)
    assert texts[2].startswith("[00:00:00] ") and texts[-1].startswith("[03:00:05] ")


def test_the_seed_doc_format_is_the_docx_exporter(exporters):
    assert exporters.get("doc") is exporters.get("docx")


def test_json_round_trips_everything(transcript, exporters):
    data = json.loads(exporters.get("json").render(transcript, ExportOptions()))
    assert (data["id"], data["title"], data["duration_secs"], data["model"]) == (
        7, "Lecture 3 — Entropy.m4a", 3 * HOUR + 10, "faster-whisper tiny.en")
    segments = [Segment.from_json(item) for chunk in data["chunks"] for item in chunk["segments"]]
    assert segments == list(transcript.segments)
    assert data["text"] == "\n\n".join(chunk.text for chunk in transcript.chunks)


def test_markdown_has_a_heading_timestamps_and_escaped_text(transcript, exporters):
    text = exporters.get("md").render(transcript, ExportOptions()).decode("utf-8")
    assert text.startswith("# Lecture 3 — Entropy.m4a\n")
    assert "**[00:00:00]** Welcome to thermodynamics." in text
    assert "\\<b\\>forward\\</b\\>" in text
    assert "**[03:00:05]**" in text


def test_an_empty_transcript_renders_without_error(exporters):
    empty = Transcript(1, "x.wav", 0.0, datetime(2026, 1, 1), "completed")
    for name in exporters.names():
        assert isinstance(exporters.get(name).render(empty, ExportOptions()), bytes)


@pytest.mark.parametrize("seconds, expected", [(0, "00:00:00"), (59.9996, "00:01:00"), (3 * HOUR + 61.5, "03:01:01")])
def test_clock_formats_hours_minutes_seconds(seconds, expected):
    assert clock(seconds) == expected
    assert clock(3725.042, ",", True) == "01:02:05,042"


def test_docx_says_a_detected_language_was_detected(transcript, exporters):
    detected = dataclasses.replace(transcript, language="de", language_probability=0.87)
    document = docx.Document(io.BytesIO(exporters.get("docx").render(detected, ExportOptions())))
    assert "Language: de (detected, 87%)" in document.paragraphs[1].text.splitlines()

