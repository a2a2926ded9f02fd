"""The seed's transcription routes with ownership enforced, plus segments, delete and retry."""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path
from typing import Any

from aiohttp import web

from ..jobs.states import TransitionRefused
from ..jobs.transcripts import (SegmentChange, all_segments_json, change_segment, one_transcription_json,
                               transcription_page)
from ..options import option_specs, overrides_from
from ..store import TranscriptionChunk
from ..validation import Field
from .api import PATH, FormBody, Param, param
from .body import json_object, pagination
from .errors import conflict, not_found
from .keys import DAEMON
from .security import current_user, owned_transcription
from .shapes import SegmentEditJson, chunk_json, page_json
from .uploads import form_values, submit_upload

UPLOAD_FIELD = "audiofile"
OPTION_FIELDS = tuple(Field(spec.name, spec.kind, check=spec.problem) for spec in option_specs() if spec.from_clients)
"""The job options an upload may set, as form fields of the same names."""
UPLOAD_FORM = FormBody(UPLOAD_FIELD, OPTION_FIELDS)


# -- reading ----------------------------------------------------------------------------------------------

async def list_transcriptions(request: web.Request) -> web.Response:
    user = await current_user(request, api_key=True)
    page, size = pagination(request)
    items, total = await transcription_page(request.app[DAEMON].store, user.id, page, size)
    return web.json_response(page_json(page, size, total, "transcriptions", items))


async def transcript(request: web.Request) -> web.Response:
    """The chunks of one transcription in order, a page at a time."""
    _, job = await owned_transcription(request, "task_id")
    page, size = pagination(request)
    chunks = TranscriptionChunk.select().where(TranscriptionChunk.transcription == job.id)
    rows, total = await request.app[DAEMON].store.page(chunks, page, size, TranscriptionChunk.chunk_no)
    items = [chunk_json(chunk, job.chunk_size_secs) for chunk in rows]
    return web.json_response(page_json(page, size, total, "transcriptions", items))


async def info(request: web.Request) -> web.Response:
    _, job = await owned_transcription(request, "transcript_id")
    return web.json_response(await one_transcription_json(request.app[DAEMON].store, job))


async def segments(request: web.Request) -> web.Response:
    """Timestamped segments (with words when the backend gave them) across all finished chunks."""
    _, job = await owned_transcription(request, "transcript_id")
    page, size = pagination(request)
    everything = await all_segments_json(request.app[DAEMON].store, job.id)
    items = everything[(page - 1) * size: page * size]
    return web.json_response(page_json(page, size, len(everything), "segments", items))


async def audio(request: web.Request) -> web.FileResponse:
    """The recording as it was uploaded, to its owner, with HTTP ranges (``Range``, ``If-Range``; 206 and
    416 as RFC 9110 says) so that a player can seek without fetching the whole lecture. A browser's
    ``<audio src>`` cannot send a header: the access token may come as ``?token=``."""
    _, job = await owned_transcription(request, "task_id", query_token=True)
    path = Path(job.audio_path) if job.audio_path else None
    if path is None or not await asyncio.to_thread(path.is_file):
        raise not_found(f"The recording of transcription {job.id} is no longer stored")
    media_type = mimetypes.guess_type(job.filename or path.name)[0] or "application/octet-stream"
    return web.FileResponse(path, headers={"Content-Type": media_type, "Cache-Control": "private, no-cache"})


def _text_problem(value: str) -> str | None:
    if 0 < len(value.strip()) <= MAX_SEGMENT_CHARS:
        return None
    return f"text must have 1 to {MAX_SEGMENT_CHARS} characters"


def _label_problem(value: str) -> str | None:
    return None if len(value.strip()) <= MAX_LABEL_CHARS else f"label must have at most {MAX_LABEL_CHARS} characters"


MAX_SEGMENT_CHARS, MAX_LABEL_CHARS = 2000, 200
SEGMENT_CHANGE = (Field("text", str, check=_text_problem), Field("label", str, check=_label_problem),
                  Field("restore", bool))
SEGMENT_PARAMS = (Param("chunk_order", int, PATH, required=True, ge=0, description="The segment's chunk"),
                  Param("segment_no", int, PATH, required=True, ge=0, description="Its number in the chunk"))


async def correct_segment(request: web.Request) -> web.Response:
    """Correct a segment's text (a misheard name, a term) or label it ("Question from the audience");
    ``restore`` puts the machine's text back. Exports and search use the corrected text and show the label;
    the machine's text is kept."""
    _, job = await owned_transcription(request, "transcript_id")
    chunk_no, segment_no = param(request, "chunk_order"), param(request, "segment_no")
    change = SegmentChange(**await json_object(request))
    found = await change_segment(request.app[DAEMON].store, job.id, chunk_no, segment_no, change)
    if found is None:
        raise not_found(f"Transcription {job.id} has no segment {segment_no} in chunk {chunk_no}")
    row, machine = found
    return web.json_response(SegmentEditJson(chunk_order=row.chunk_no, segment_no=row.segment_no,
                                             start=row.start_secs, end=row.end_secs, text=row.text,
                                             machine_text=machine, label=row.label, edited=row.edited))


# -- changing -----------------------------------------------------------------------------------------------

async def cancel(request: web.Request) -> web.Response:
    _, job = await owned_transcription(request, "transcript_id")
    try:
        await request.app[DAEMON].cancel(job.id)
    except TransitionRefused as error:
        raise conflict(str(error)) from None
    return web.Response(text="OK", content_type="text/plain")


async def retry(request: web.Request) -> web.Response:
    _, job = await owned_transcription(request, "transcript_id")
    daemon = request.app[DAEMON]
    try:
        job = await daemon.retry(job.id)
    except TransitionRefused as error:
        raise conflict(str(error)) from None
    return web.json_response(await one_transcription_json(daemon.store, job))


async def delete(request: web.Request) -> web.Response:
    """Remove a transcription with its chunks and audio; a running one is cancelled first."""
    _, job = await owned_transcription(request, "transcript_id")
    try:
        await request.app[DAEMON].delete(job.id)
    except TransitionRefused as error:
        raise conflict(str(error)) from None
    return web.Response(status=204)


# -- upload -------------------------------------------------------------------------------------------------

async def upload(request: web.Request) -> web.Response:
    """``POST /upload-audiofile``: multipart field ``audiofile``, plus optional decoding options."""
    user = await current_user(request, can_interact=True, api_key=True)
    job = (await submit_upload(request, user, _parse_options)).job
    return web.json_response({"message": "File uploaded successfully", "task_id": job.id, "file": job.filename})


def _parse_options(fields: dict[str, list[str]]) -> tuple[Any, None]:
    return overrides_from(form_values(fields, OPTION_FIELDS)), None
