"""Reading a transcription back: its summary, its segments, and the transcript exporters render.

The summary is the seed's transcription object. It is sent by the API and handed to the
``lazyd_transcription_finished`` hook alike, so it lives here, below the web layer, where the daemon that
fires the hook can reach it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any, NotRequired, TypedDict

from ..backend import Segment, confidence
from ..exporters import Transcript
from ..exporters import TranscriptChunk as ChunkOfTranscript
from ..options import load_options
from ..store import Store, Transcription, TranscriptionChunk

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
    language: NotRequired[str | None]
    language_probability: NotRequired[float | None]


def transcription_json(row: Transcription, description: str) -> TranscriptionJson:
    """The seed's transcription object; ``description`` is the start of chunk 0's text."""
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


async def transcriptions_json(store: Store, rows: list[Transcription]) -> list[TranscriptionJson]:
    texts = await descriptions(store, (row.id for row in rows))
    return [transcription_json(row, texts.get(row.id, "")) for row in rows]


async def one_transcription_json(store: Store, row: Transcription) -> TranscriptionJson:
    """The seed's object for one transcription, plus lazyd's details (the list keeps the seed's shape)."""
    [data] = await transcriptions_json(store, [row])
    return data | {"language": row.language, "language_probability": row.language_probability}


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


async def all_segments_json(store: Store, job_id: int) -> list[dict[str, Any]]:
    """Every stored segment of the transcription, in order, each with its chunk's number."""
    return await asyncio.to_thread(_numbered_segments, await _chunk_rows(store, job_id))


def _numbered_segments(rows: list[ChunkRow]) -> list[dict[str, Any]]:
    return [{"chunk_order": number, **segment,
             "confidence": confidence(segment.get("avg_logprob"), segment.get("no_speech_prob"))}
            for number, _start, _end, _text, raw_segments, _language in rows
            for segment in json.loads(raw_segments or "[]")]


async def load_transcript(store: Store, job: Transcription) -> Transcript:
    """The transcription and its finished chunks, as exporters receive it."""
    rows = await _chunk_rows(store, job.id)
    return Transcript(
        id=job.id, title=job.filename or f"Transcription {job.id}", duration_secs=job.audio_len_secs,
        created=job.create_date, state=job.current_state, model=job.model_name,
        **_language_of(job),
        chunks=await asyncio.to_thread(lambda: tuple(_decoded_chunk(*row) for row in rows)))


def _language_of(job: Transcription) -> dict[str, Any]:
    """The detected language, or the one the job asked for when no chunk reported one."""
    if job.language:
        return {"language": job.language, "language_probability": job.language_probability}
    return {"language": load_options(job.options).language or "", "language_probability": None}


def _decoded_chunk(number: int, start: float, end: float, text: str, raw_segments: str | None,
                   language: str) -> ChunkOfTranscript:
    segments = tuple(Segment.from_json(data) for data in json.loads(raw_segments or "[]"))
    if not segments and text.strip():
        # An external worker reports a chunk's text without timings: one segment spans the chunk, so that
        # the timed formats (docx, srt, vtt, md) carry its text too.
        segments = (Segment(start, end, text.strip()),)
    return ChunkOfTranscript(number, start, end, text, segments, language)
