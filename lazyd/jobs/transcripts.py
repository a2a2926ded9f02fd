"""Reading a transcription back: its summary, its segments, and the transcript exporters render.

The summary is the seed's transcription object. It is sent by the API and handed to the
``lazyd_transcription_finished`` hook alike, so it lives here, below the web layer, where the daemon that
fires the hook can reach it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from typing import Any, NotRequired, TypedDict

from peewee import SQL, fn

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


def transcription_json(row: Transcription, description: str | None, done_secs: float | None) -> TranscriptionJson:
    """The seed's transcription object and lazyd's additions; ``description`` is the start of chunk 0's text
    (``None``: no chunk 0 yet), ``done_secs`` the seconds in finished chunks (``None``: none yet)."""
    return {
        "id": row.id,
        "creator_id": row.creator_id,
        "audio_len_secs": row.audio_len_secs,
        "chunk_size_secs": row.chunk_size_secs,
        "current_state": row.current_state,
        "create_date": row.create_date.isoformat(),
        "update_date": row.update_date.isoformat(),
        "description": (description or "")[:DESCRIPTION_CHARS],
        "error_count": row.error_count,
        "filename": row.filename,
        "done_secs": round(min(float(done_secs or 0.0), row.audio_len_secs), 2),
    }


def _summary_columns() -> tuple[Any, Any]:
    """Two columns for a select of transcriptions: the start of chunk 0's text (``description``) and the
    seconds of the recording in finished chunks (``done_secs``), each a subquery on the row's chunks, so
    that a page of transcriptions is one query whatever its size."""
    chunk = TranscriptionChunk
    first_words = (chunk.select(fn.SUBSTR(chunk.text, 1, DESCRIPTION_CHARS))
                   .where(chunk.transcription == Transcription.id, chunk.chunk_no == 0))
    done = (chunk.select(fn.COALESCE(fn.SUM(chunk.end_secs - chunk.start_secs), 0.0))
            .where(chunk.transcription == Transcription.id))
    return first_words.alias("description"), done.alias("done_secs")


async def transcription_page(store: Store, creator_id: int, page: int, size: int
                             ) -> tuple[list[TranscriptionJson], int]:
    """One page (1-based) of the user's transcriptions, newest first, and how many they have in all.

    One query: ``GET /transcriptions`` is what every client polls, so its cost is the daemon's tail latency
    under load (as five queries, each a hop to the database thread and back, it took 4.6 ms of the daemon's
    CPU a request; as one, with the caller's lookup, 3.2 ms).
    """
    mine = Transcription.select().where(Transcription.creator == creator_id)
    query = (mine.select_extend(*_summary_columns(), fn.COUNT(SQL("*")).over().alias("total"))
             .order_by(Transcription.create_date.desc(), Transcription.id.desc()).paginate(page, size))
    rows = await store.list(query)
    if rows:
        return [transcription_json(row, row.description, row.done_secs) for row in rows], rows[0].total
    return [], await store.count(mine) if page > 1 else 0


async def one_transcription_json(store: Store, row: Transcription) -> TranscriptionJson:
    """The seed's object for one transcription, plus lazyd's details (the list keeps the seed's shape)."""
    summary = await store.list(Transcription.select(*_summary_columns()).where(Transcription.id == row.id).tuples())
    description, done_secs = summary[0] if summary else (None, None)  # deleted meanwhile: the row as it was
    return (transcription_json(row, description, done_secs)
            | {"language": row.language, "language_probability": row.language_probability, "node": row.node})


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
