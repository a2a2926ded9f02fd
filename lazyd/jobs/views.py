"""The API's JSON shapes of transcriptions, chunks and segments (the seed's, where the seed had them)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

from ..backend import Segment
from ..exporters import Transcript
from ..exporters import TranscriptChunk as ChunkOfTranscript
from ..store import Transcription, TranscriptionChunk

DESCRIPTION_CHARS = 256


def transcription_json(row: Transcription, description: str) -> dict[str, Any]:
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


async def descriptions(ids: Iterable[int]) -> dict[int, str]:
    """Chunk 0's text of each transcription that has one, in one query."""
    ids = list(ids)
    if not ids:
        return {}
    query = (TranscriptionChunk.select(TranscriptionChunk.transcription, TranscriptionChunk.text)
             .where(TranscriptionChunk.transcription.in_(ids), TranscriptionChunk.chunk_no == 0))
    rows = await TranscriptionChunk._meta.database.list(query)
    return {row.transcript_id: row.text for row in rows}


async def transcriptions_json(rows: list[Transcription]) -> list[dict[str, Any]]:
    texts = await descriptions(row.id for row in rows)
    return [transcription_json(row, texts.get(row.id, "")) for row in rows]


async def one_transcription_json(row: Transcription) -> dict[str, Any]:
    [data] = await transcriptions_json([row])
    return data


def chunk_json(chunk: TranscriptionChunk, chunk_size_secs: float) -> dict[str, Any]:
    """The seed's chunk object: ``chunk_size_secs`` is the transcription's nominal size, as an integer."""
    return {"id": chunk.id, "chunk_order": chunk.chunk_no, "chunk_size_secs": int(chunk_size_secs),
            "transcription": chunk.text}


async def _chunk_rows(job_id: int) -> list[tuple[int, float, float, str, str | None]]:
    """Each finished chunk's number, start, end, text and segments, in order; the segments as raw JSON.

    The JSON is left for the caller to decode in a thread: a long lecture holds tens of thousands of timed
    words, too much work for the event loop.
    """
    chunk = TranscriptionChunk
    query = (chunk.select(chunk.chunk_no, chunk.start_secs, chunk.end_secs, chunk.text,
                          chunk.segments.cast("TEXT").alias("raw_segments"))
             .where(chunk.transcription == job_id).order_by(chunk.chunk_no).tuples())
    return await chunk._meta.database.list(query)


async def all_segments_json(job_id: int) -> list[dict[str, Any]]:
    """Every stored segment of the transcription, in order, each with its chunk's number."""
    return await asyncio.to_thread(_numbered_segments, await _chunk_rows(job_id))


def _numbered_segments(rows: list[tuple[int, float, float, str, str | None]]) -> list[dict[str, Any]]:
    return [{"chunk_order": number, **segment}
            for number, _start, _end, _text, raw_segments in rows for segment in json.loads(raw_segments or "[]")]


async def load_transcript(job: Transcription) -> Transcript:
    """The transcription and its finished chunks, as exporters receive it."""
    rows = await _chunk_rows(job.id)
    return Transcript(
        id=job.id, title=job.filename or f"Transcription {job.id}", duration_secs=job.audio_len_secs,
        created=job.create_date, state=job.current_state, model=job.model_name,
        language=job.options.get("language", ""),
        chunks=await asyncio.to_thread(lambda: tuple(_decoded_chunk(*row) for row in rows)))


def _decoded_chunk(number: int, start: float, end: float, text: str, raw_segments: str | None) -> ChunkOfTranscript:
    segments = tuple(Segment.from_json(data) for data in json.loads(raw_segments or "[]"))
    if not segments and text.strip():
        # An external worker reports a chunk's text without timings: one segment spans the chunk, so that
        # the timed formats (docx, srt, vtt, md) carry its text too.
        segments = (Segment(start, end, text.strip()),)
    return ChunkOfTranscript(number, start, end, text, segments)
