"""Reading a transcription back: its summary, its segments, and the transcript exporters render.

The summary is the seed's transcription object. It is sent by the API and handed to the
``lazyd_transcription_finished`` hook alike, so it lives here, below the web layer, where the daemon that
fires the hook can reach it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, NotRequired, TypedDict

from peewee import fn

from ..backend import Segment
from ..exporters import Transcript
from ..exporters import TranscriptChunk as ChunkOfTranscript
from ..options import load_options
from ..store import SegmentText, Store, Transcription, TranscriptionChunk, segment_rows

DESCRIPTION_CHARS = 256


class TranscriptionJson(TypedDict):
    """The seed's transcription object; the details (``language``...) come with one transcription only."""

    id: int
    creator_id: int
    audio_len_secs: float
    chunk_size_secs: float
    current_state: str
    """One of :data:`lazyd.jobs.states.STATES` (which imports this module)."""
    create_date: str
    update_date: str
    description: str
    error_count: int
    filename: str
    """The recording's name as uploaded (lazyd's addition)."""
    done_secs: float
    """Seconds of the recording in finished chunks (lazyd's addition; live progress comes over ``GET /ws``)."""
    language: NotRequired[str | None]
    language_probability: NotRequired[float | None]
    node: NotRequired[str]
    """The daemon that ran its latest attempt ("" before one did)."""


def transcription_json(row: Transcription, description: str, done_secs: float) -> TranscriptionJson:
    """The seed's transcription object and lazyd's additions; ``description`` is the start of chunk 0's text."""
    return {
        "id": row.id,
        "creator_id": row.creator_id,
        "audio_len_secs": row.audio_len_secs,
        "chunk_size_secs": row.chunk_size_secs,
        "current_state": row.current_state,
        "create_date": row.create_date.isoformat(),
        "update_date": row.update_date.isoformat(),
        "description": description[:DESCRIPTION_CHARS],
        "error_count": row.error_count,
        "filename": row.filename,
        "done_secs": round(min(done_secs, row.audio_len_secs), 2),
    }


async def descriptions(store: Store, ids: Iterable[int]) -> dict[int, str]:
    """Chunk 0's text of each transcription that has one, in one query."""
    ids = list(ids)
    if not ids:
        return {}
    query = (TranscriptionChunk.select(TranscriptionChunk.transcription, TranscriptionChunk.text)
             .where(TranscriptionChunk.transcription.in_(ids), TranscriptionChunk.chunk_no == 0))
    rows = await store.list(query)
    return {row.transcript_id: row.text for row in rows}


async def done_seconds(store: Store, ids: Iterable[int]) -> dict[int, float]:
    """How many seconds of each transcription's recording its finished chunks cover, in one query."""
    ids = list(ids)
    if not ids:
        return {}
    chunk = TranscriptionChunk
    query = (chunk.select(chunk.transcription, fn.SUM(chunk.end_secs - chunk.start_secs).alias("done"))
             .where(chunk.transcription.in_(ids)).group_by(chunk.transcription).tuples())
    return {job_id: float(done or 0.0) for job_id, done in await store.list(query)}


async def transcriptions_json(store: Store, rows: list[Transcription]) -> list[TranscriptionJson]:
    texts = await descriptions(store, (row.id for row in rows))
    done = await done_seconds(store, (row.id for row in rows))
    return [transcription_json(row, texts.get(row.id, ""), done.get(row.id, 0.0)) for row in rows]


async def one_transcription_json(store: Store, row: Transcription) -> TranscriptionJson:
    """The seed's object for one transcription, plus lazyd's details (the list keeps the seed's shape)."""
    [data] = await transcriptions_json(store, [row])
    return data | {"language": row.language, "language_probability": row.language_probability, "node": row.node}


ChunkRow = tuple[int, float, float, str, str | None, str]


async def _chunk_rows(store: Store, job_id: int) -> list[ChunkRow]:
    """Each finished chunk's number, start, end, text, segments and language, in order; the segments as
    raw JSON.

    The JSON is left for the caller to decode in a thread: a long lecture holds tens of thousands of timed
    words, too much work for the event loop.
    """
    chunk = TranscriptionChunk
    query = (chunk.select(chunk.chunk_no, chunk.start_secs, chunk.end_secs, chunk.text,
                          chunk.segments.cast("TEXT").alias("raw_segments"), chunk.language)
             .where(chunk.transcription == job_id).order_by(chunk.chunk_no).tuples())
    return await store.list(query)


Corrections = dict[tuple[int, int], SegmentText]
"""The segments a person corrected or labelled, by ``(chunk number, segment number)``."""


async def corrections(store: Store, job_id: int) -> Corrections:
    query = SegmentText.select().where(SegmentText.transcription == job_id,
                                       (SegmentText.edited == True) | (SegmentText.label != ""))  # noqa: E712
    return {(row.chunk_no, row.segment_no): row for row in await store.list(query)}


def corrected(segment: Segment, correction: SegmentText | None) -> Segment:
    """The segment as a person left it: their text (whose words have no timings) and their label."""
    if correction is None:
        return segment
    if correction.edited:
        segment = replace(segment, text=correction.text, words=None)
    return replace(segment, label=correction.label)


async def all_segments_json(store: Store, job_id: int) -> list[dict[str, Any]]:
    """Every stored segment of the transcription, in order, each with its chunk's number, its own number in
    the chunk (what ``PATCH /transcript/segments/{chunk}/{segment}`` names) and any correction."""
    rows, edits = await _chunk_rows(store, job_id), await corrections(store, job_id)
    return await asyncio.to_thread(_numbered_segments, rows, edits)


def _numbered_segments(rows: list[ChunkRow], edits: Corrections) -> list[dict[str, Any]]:
    numbered = []
    for number, _start, _end, _text, raw_segments, _language in rows:
        for index, data in enumerate(json.loads(raw_segments or "[]")):
            correction = edits.get((number, index))
            segment = corrected(Segment.from_json(data), correction)
            numbered.append({"chunk_order": number, "segment_no": index, **segment.to_json(), "label": segment.label,
                             "edited": bool(correction and correction.edited), "confidence": segment.confidence})
    return numbered


async def load_transcript(store: Store, job: Transcription) -> Transcript:
    """The transcription and its finished chunks, as exporters receive it."""
    rows, edits = await _chunk_rows(store, job.id), await corrections(store, job.id)
    return Transcript(
        id=job.id, title=job.filename or f"Transcription {job.id}", duration_secs=job.audio_len_secs,
        created=job.create_date, state=job.current_state, model=job.model_name,
        **_language_of(job),
        chunks=await asyncio.to_thread(lambda: tuple(_decoded_chunk(*row, edits) for row in rows)))


def _language_of(job: Transcription) -> dict[str, Any]:
    """The detected language, or the one the job asked for when no chunk reported one."""
    if job.language:
        return {"language": job.language, "language_probability": job.language_probability}
    return {"language": load_options(job.options).language or "", "language_probability": None}


def _decoded_chunk(number: int, start: float, end: float, text: str, raw_segments: str | None,
                   language: str, edits: Corrections) -> ChunkOfTranscript:
    segments = tuple(Segment.from_json(data) for data in json.loads(raw_segments or "[]"))
    if not segments and text.strip():
        # An external worker reports a chunk's text without timings: one segment spans the chunk, so that
        # the timed formats (docx, srt, vtt, md) carry its text too.
        segments = (Segment(start, end, text.strip()),)
    if any(key[0] == number for key in edits):
        segments = tuple(corrected(segment, edits.get((number, index))) for index, segment in enumerate(segments))
        text = " ".join(segment.text.strip() for segment in segments if segment.text.strip())
    return ChunkOfTranscript(number, start, end, text, segments, language)


@dataclass(frozen=True)
class SegmentChange:
    """What a person changes on one segment: ``None`` leaves a part as it is."""

    text: str | None = None
    label: str | None = None
    restore: bool = False
    """Put the machine's text back (a ``text`` given too is ignored)."""


async def change_segment(store: Store, job_id: int, chunk_no: int, segment_no: int,
                         change: SegmentChange) -> tuple[SegmentText, str] | None:
    """Apply ``change`` to the segment; the row as it now is and the machine's text, or ``None`` when the
    transcription has no such segment. The machine's text is never changed: it stays in the chunk."""
    async with store.write_transaction():
        row = await SegmentText.aget_or_none(SegmentText.transcription == job_id, SegmentText.chunk_no == chunk_no,
                                             SegmentText.segment_no == segment_no)
        if row is None:
            return None
        machine = await _machine_text(job_id, chunk_no, segment_no)
        if change.restore or change.text is not None:
            row.text = machine if change.restore else change.text.strip()
            row.edited = row.text != machine
        if change.label is not None:
            row.label = change.label.strip()
        await row.asave()
    return row, machine


async def _machine_text(job_id: int, chunk_no: int, segment_no: int) -> str:
    chunk = await TranscriptionChunk.aget(TranscriptionChunk.transcription == job_id,
                                          TranscriptionChunk.chunk_no == chunk_no)
    [(_, _, _, text)] = [row for row in segment_rows(chunk.start_secs, chunk.end_secs, chunk.text, chunk.segments)
                         if row[0] == segment_no]
    return text
