"""The seed's transcription routes with ownership enforced, plus segments, delete and retry.

Another user's transcription answers exactly as a missing one does (404), so ids reveal nothing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.multipart import BodyPartReader

from ..audio import AudioError
from ..files import remove_files
from ..jobs import ingest
from ..jobs.ingest import DurationOutOfRange, UploadTooLarge
from ..jobs.states import ACTIVE, ActiveJobLimit, TransitionRefused
from ..jobs.views import all_segments_json, chunk_json, one_transcription_json, transcriptions_json
from ..store import Transcription, TranscriptionChunk, User, fetch_page, release_connection
from ..validation import INT64_MAX, Field, ValidationFailed, fail, parse_object, problem, query_int
from .body import page_json, pagination
from .errors import ApiError, conflict, not_found
from .keys import CONFIG, SCHEDULER, STATES, UPLOAD_QUOTA
from .security import current_user

NOT_FOUND = "Transcription not found"
UPLOAD_FIELD = "audiofile"
OPTION_BYTES = 10_000
OPTION_FIELDS = (
    Field("language", str, check=lambda code: None if re.fullmatch(r"[a-z]{2,3}", code)
          else "language must be an ISO 639-1 code such as 'en'"),
    Field("beam_size", int, check=lambda n: None if 1 <= n <= 20 else "beam_size must be between 1 and 20"),
    Field("initial_prompt", str),
    Field("hotwords", str),
    Field("vad_filter", bool),
    Field("word_timestamps", bool),
    Field("batch_size", int, check=lambda n: None if 0 <= n <= 64 else "batch_size must be between 0 and 64"),
)


async def owned(user: User, job_id: int) -> Transcription:
    job = await Transcription.aget_or_none(Transcription.id == job_id, Transcription.creator == user.id)
    if job is None:
        raise not_found(NOT_FOUND)
    return job


async def owned_from_query(request: web.Request, name: str) -> tuple[User, Transcription]:
    job_id = query_int(request.query, name)
    user = await current_user(request)
    return user, await owned(user, job_id)


# -- reading ----------------------------------------------------------------------------------------------

async def list_transcriptions(request: web.Request) -> web.Response:
    user = await current_user(request)
    page, size = pagination(request, max_size=INT64_MAX)  # a seed route: any size, as the seed took
    mine = Transcription.select().where(Transcription.creator == user.id)
    rows, total = await fetch_page(mine, page, size, Transcription.create_date.desc(), Transcription.id.desc())
    return web.json_response(page_json(page, size, total, "transcriptions", await transcriptions_json(rows)))


async def transcript(request: web.Request) -> web.Response:
    """The chunks of one transcription in order, a page at a time."""
    _, job = await owned_from_query(request, "task_id")
    page, size = pagination(request, max_size=INT64_MAX)  # a seed route: any size, as the seed took
    chunks = TranscriptionChunk.select().where(TranscriptionChunk.transcription == job.id)
    rows, total = await fetch_page(chunks, page, size, TranscriptionChunk.chunk_no)
    items = [chunk_json(chunk, job.chunk_size_secs) for chunk in rows]
    return web.json_response(page_json(page, size, total, "transcriptions", items))


async def info(request: web.Request) -> web.Response:
    _, job = await owned_from_query(request, "transcript_id")
    return web.json_response(await one_transcription_json(job))


async def segments(request: web.Request) -> web.Response:
    """Timestamped segments (with words when the backend gave them) across all finished chunks."""
    _, job = await owned_from_query(request, "transcript_id")
    page, size = pagination(request)
    everything = await all_segments_json(job.id)
    items = everything[(page - 1) * size: page * size]
    return web.json_response(page_json(page, size, len(everything), "segments", items))


# -- changing -----------------------------------------------------------------------------------------------

async def cancel(request: web.Request) -> web.Response:
    _, job = await owned_from_query(request, "transcript_id")
    await _cancel(request, job.id)
    return web.Response(text="OK", content_type="text/plain")


async def _cancel(request: web.Request, job_id: int) -> Transcription:
    try:
        job = await request.app[STATES].cancel(job_id)
    except TransitionRefused as error:
        raise conflict(str(error)) from None
    if scheduler := request.app.get(SCHEDULER):
        scheduler.cancel(job_id)
    return job


async def retry(request: web.Request) -> web.Response:
    _, job = await owned_from_query(request, "transcript_id")
    try:
        job = await request.app[STATES].retry(job.id)
    except TransitionRefused as error:
        raise conflict(str(error)) from None
    if scheduler := request.app.get(SCHEDULER):
        scheduler.wake()
    return web.json_response(await one_transcription_json(job))


async def delete(request: web.Request) -> web.Response:
    """Remove a transcription with its chunks and audio; a running one is cancelled first."""
    _, job = await owned_from_query(request, "transcript_id")
    if job.current_state in ACTIVE:
        await _cancel(request, job.id)
    try:
        audio = await request.app[STATES].delete(job.id)
    except TransitionRefused as error:
        raise conflict(str(error)) from None
    await remove_files([audio] if audio else [])
    return web.Response(status=204)


# -- upload -------------------------------------------------------------------------------------------------

async def upload(request: web.Request) -> web.Response:
    """``POST /upload-audiofile``: multipart field ``audiofile``, plus optional decoding options."""
    config = request.app[CONFIG]
    user = await current_user(request, can_interact=True)
    limit = config.limits.max_upload_mb * 1024 * 1024
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise ApiError(413, str(UploadTooLarge(limit)))
    quota = request.app[UPLOAD_QUOTA]
    try:
        await request.app[STATES].check_active(user.id, quota)
        await release_connection()
        stored, options = await _receive(request, limit)
        job = await ingest.queue_file(request.app[STATES], config, stored, creator_id=user.id, quota=quota,
                                      source="upload", options=options)
    except ActiveJobLimit as error:
        raise conflict(str(error)) from None
    except DurationOutOfRange as error:  # the seed's validator: a 422 in the list shape
        raise fail(("body", UPLOAD_FIELD), f"Value error, {error}", "value_error") from None
    except AudioError as error:
        raise ApiError(415, str(error)) from None
    if scheduler := request.app.get(SCHEDULER):
        scheduler.wake()
    return web.json_response({"message": "File uploaded successfully", "task_id": job.id, "file": stored.filename})


async def _receive(request: web.Request, limit: int) -> tuple[ingest.StoredFile, dict[str, Any]]:
    """Stream the upload to disk; collect option fields, whichever order the parts come in."""
    if not request.content_type.startswith("multipart/"):
        raise _missing_file()
    stored, raw_options = None, {}
    try:
        async for part in _parts(request):
            if part.name == UPLOAD_FIELD and stored is None:
                stored = await _store_part(request, part, limit)
            elif part.name in {field.name for field in OPTION_FIELDS}:
                raw_options[part.name] = await _small_text(part)
        if stored is None:
            raise _missing_file()
        return stored, _parse_options(raw_options)
    except BaseException:
        if stored is not None:
            await remove_files([str(stored.path)])
        raise


async def _parts(request: web.Request) -> AsyncIterator[BodyPartReader]:
    """The body's parts; a malformed body (no boundary, garbage, cut short) is the client's error, a 400."""
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader):
                yield part
    except ValueError as error:
        raise ApiError(400, f"The body is not valid multipart/form-data: {error}") from None


async def _small_text(part: BodyPartReader, limit: int = OPTION_BYTES) -> str:
    """An option field's text, read in bounded memory: a field larger than ``limit`` is refused."""
    data = bytearray()
    while chunk := await part.read_chunk(4096):
        data += chunk
        if len(data) > limit:
            raise fail(("body", part.name), f"Value error, {part.name} is longer than {limit} bytes", "value_error")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise fail(("body", part.name), "Input should be valid UTF-8 text", "string_unicode") from None


async def _store_part(request: web.Request, part: BodyPartReader, limit: int) -> ingest.StoredFile:
    try:
        stored = await ingest.store_stream(part.read_chunk, request.app[CONFIG].audio_path,
                                           part.filename or "upload", limit)
    except UploadTooLarge as error:
        raise ApiError(413, str(error)) from None
    if stored.size == 0:
        await remove_files([str(stored.path)])
        raise ApiError(400, "The uploaded file is empty")
    return stored


def _missing_file() -> ValidationFailed:
    return fail(("body", UPLOAD_FIELD), "Field required", "missing")


def _parse_options(raw: dict[str, str]) -> dict[str, Any]:
    """Form fields are text: convert them to the option types, then validate like a JSON body."""
    converted: dict[str, Any] = {}
    errors = []
    for field in OPTION_FIELDS:
        if field.name not in raw:
            continue
        try:
            converted[field.name] = _from_form(raw[field.name], field.kind)
        except ValueError:
            errors.append(problem(("body", field.name), f"Input should be a valid {field.kind.__name__}",
                                  f"{field.kind.__name__}_parsing"))
    if errors:
        raise ValidationFailed(errors)
    return parse_object(converted, OPTION_FIELDS)


def _from_form(text: str, kind: type) -> Any:
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(text)
        return text.lower() in ("true", "1")
    return kind(text.strip()) if kind is int else text
