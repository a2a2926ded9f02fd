"""The seed's transcription routes with ownership enforced, plus segments, delete and retry."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import BadContentDispositionHeader, BodyPartReader

from ..audio import AudioError
from ..daemon import Daemon
from ..files import remove_files
from ..jobs.ingest import DurationOutOfRange, StoredFile, UploadTooLarge
from ..jobs.states import ActiveJobLimit, TransitionRefused
from ..jobs.transcripts import all_segments_json, one_transcription_json, transcriptions_json
from ..options import from_text, option_specs, overrides_from
from ..store import Transcription, TranscriptionChunk
from ..validation import INT64_MAX, Field, ValidationFailed, fail, parse_object, problem
from .body import arrives_in_time, pagination
from .errors import ApiError, conflict
from .keys import CONFIG, DAEMON
from .security import current_user, owned_transcription
from .shapes import chunk_json, page_json

UPLOAD_FIELD = "audiofile"
OPTION_BYTES = 10_000
OPTION_FIELDS = tuple(Field(spec.name, spec.kind, check=spec.problem) for spec in option_specs() if spec.from_clients)
"""The job options an upload may set, as form fields of the same names."""


# -- reading ----------------------------------------------------------------------------------------------

async def list_transcriptions(request: web.Request) -> web.Response:
    user = await current_user(request, api_key=True)
    page, size = pagination(request, max_size=INT64_MAX)  # a seed route: any size, as the seed took
    store = request.app[DAEMON].store
    mine = Transcription.select().where(Transcription.creator == user.id)
    rows, total = await store.page(mine, page, size, Transcription.create_date.desc(), Transcription.id.desc())
    return web.json_response(page_json(page, size, total, "transcriptions", await transcriptions_json(store, rows)))


async def transcript(request: web.Request) -> web.Response:
    """The chunks of one transcription in order, a page at a time."""
    _, job = await owned_transcription(request, "task_id")
    page, size = pagination(request, max_size=INT64_MAX)  # a seed route: any size, as the seed took
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
    config = request.app[CONFIG]
    user = await current_user(request, can_interact=True, api_key=True)
    limit = config.limits.max_upload_mb * 1024 * 1024
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise ApiError(413, str(UploadTooLarge(limit)))
    daemon = request.app[DAEMON]
    try:
        await daemon.check_active(user.id)
        await daemon.store.release_connection()
        stored, options = await _receive(request, daemon, limit)
        job = await daemon.submit(stored, creator_id=user.id, options=options)
    except ActiveJobLimit as error:
        raise conflict(str(error)) from None
    except DurationOutOfRange as error:  # the seed's validator: a 422 in the list shape
        raise fail(("body", UPLOAD_FIELD), f"Value error, {error}", "value_error") from None
    except AudioError as error:
        raise ApiError(415, str(error)) from None
    return web.json_response({"message": "File uploaded successfully", "task_id": job.id, "file": job.filename})


async def _receive(request: web.Request, daemon: Daemon, limit: int) -> tuple[StoredFile, Any]:
    """Stream the upload to disk; collect option fields, whichever order the parts come in. Whatever goes
    wrong, the partly or wholly written file is removed."""
    if not request.content_type.startswith("multipart/"):
        raise _missing_file()
    stored, raw_options = None, {}
    try:
        with _malformed_body_is_a_400():
            reader = await request.multipart()
            while (part := await arrives_in_time(request, reader.next())) is not None:
                if not isinstance(part, BodyPartReader):
                    continue
                if part.name == UPLOAD_FIELD and stored is None:
                    stored = await _store_part(request, daemon, part, limit)
                elif part.name in {field.name for field in OPTION_FIELDS}:
                    raw_options[part.name] = await _small_text(request, part)
        if stored is None:
            raise _missing_file()
        if stored.size == 0:
            raise ApiError(400, "The uploaded file is empty")
        return stored, _parse_options(raw_options)
    except BaseException:
        if stored is not None:
            await remove_files([str(stored.path)])
        raise


_MALFORMED_MULTIPART = (ValueError, HttpProcessingError, BadContentDispositionHeader)
"""What aiohttp's multipart reader raises for a body that is not multipart, or is cut short anywhere: in a
part's headers, inside a part, before the closing boundary (``BadContentDispositionHeader`` is a warning
that is raised when warnings are errors, as in the tests)."""


@contextlib.contextmanager
def _malformed_body_is_a_400() -> Iterator[None]:
    try:
        yield
    except _MALFORMED_MULTIPART as error:
        reason = error.message if isinstance(error, HttpProcessingError) else str(error)
        raise ApiError(400, "The body is not valid multipart/form-data, or it ends before its closing boundary "
                            f"({reason.strip()})") from None


async def _small_text(request: web.Request, part: BodyPartReader, limit: int = OPTION_BYTES) -> str:
    """An option field's text, read in bounded memory: a field larger than ``limit`` is refused."""
    data = bytearray()
    while chunk := await arrives_in_time(request, part.read_chunk(4096)):
        data += chunk
        if len(data) > limit:
            raise fail(("body", part.name), f"Value error, {part.name} is longer than {limit} bytes", "value_error")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise fail(("body", part.name), "Input should be valid UTF-8 text", "string_unicode") from None


async def _store_part(request: web.Request, daemon: Daemon, part: BodyPartReader, limit: int) -> StoredFile:
    try:
        return await daemon.receive(lambda: arrives_in_time(request, part.read_chunk()), part.filename or "upload",
                                    limit)
    except UploadTooLarge as error:
        raise ApiError(413, str(error)) from None


def _missing_file() -> ValidationFailed:
    return fail(("body", UPLOAD_FIELD), "Field required", "missing")


def _parse_options(raw: dict[str, str]) -> Any:
    """Form fields are text: convert them to the option types, then validate like a JSON body."""
    converted: dict[str, Any] = {}
    errors = []
    for field in OPTION_FIELDS:
        if field.name not in raw:
            continue
        try:
            converted[field.name] = from_text(raw[field.name], field.kind)
        except ValueError:
            errors.append(problem(("body", field.name), f"Input should be a valid {field.kind.__name__}",
                                  f"{field.kind.__name__}_parsing"))
    if errors:
        raise ValidationFailed(errors)
    return overrides_from(parse_object(converted, OPTION_FIELDS))
