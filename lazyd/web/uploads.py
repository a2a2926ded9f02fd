"""Receiving a recording as a multipart form: the file streamed to disk, small text fields beside it, then
queued as a job. The seed's ``/upload-audiofile`` and the OpenAI-style ``/v1/audio/*`` routes share it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import BadContentDispositionHeader, BodyPartReader

from ..audio import AudioError
from ..daemon import Daemon
from ..files import remove_files
from ..jobs.ingest import DurationOutOfRange, StoredFile, UploadTooLarge
from ..jobs.states import ActiveJobLimit
from ..store import Transcription, User
from ..options import from_text
from ..validation import Field, ValidationFailed, fail, parse_object, problem
from .api import FormBody, form_of
from .body import arrives_in_time
from .errors import ApiError, conflict
from .keys import CONFIG, DAEMON

FIELD_BYTES = 10_000
"""The longest text field of an upload form."""
UPLOAD_READ_BYTES = 256 * 1024
"""How much of an uploaded file is read from the request at a time. aiohttp's default, 8 KiB, made an
11.6 MB upload some 1,400 rounds of the event loop, and requests meanwhile waited up to 65 ms for it
(issue 10); 256 KiB stays a fraction of a millisecond of hashing per round."""
T = TypeVar("T")


@dataclass(frozen=True)
class Submitted(Generic[T]):
    job: Transcription
    extra: T
    """What the route's parser made of the form besides the job options."""


Parser = Callable[[dict[str, list[str]]], tuple[Any, T]]
"""The form's text fields (name: values, in order) → (job overrides, anything else the route needs); it
raises :class:`lazyd.validation.ValidationFailed` for bad fields."""


async def submit_upload(request: web.Request, user: User, parse: Parser[T]) -> Submitted[T]:
    """Receive the recording and queue it with the options ``parse`` reads from the form. A refused upload
    (too large, not audio, too long or short, bad fields, over the active-job limit) leaves no file. The
    form's fields are the ones the request's endpoint declares (:class:`lazyd.web.api.FormBody`)."""
    form = form_of(request)
    limit = request.app[CONFIG].limits.max_upload_mb * 1024 * 1024
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise ApiError(413, str(UploadTooLarge(limit)))
    daemon = request.app[DAEMON]
    try:
        await daemon.check_active(user.id)
        await daemon.store.release_connection()
        stored, fields = await _receive(request, daemon, limit, form)
        overrides, extra = await _parsed(stored, fields, parse)
        return Submitted(await daemon.submit(stored, creator_id=user.id, options=overrides), extra)
    except ActiveJobLimit as error:
        raise conflict(str(error)) from None
    except DurationOutOfRange as error:  # the seed's validator: a 422 in the list shape
        raise fail(("body", form.file_field), f"Value error, {error}", "value_error") from None
    except AudioError as error:
        raise ApiError(415, str(error)) from None


async def _parsed(stored: StoredFile, fields: dict[str, list[str]], parse: Parser[T]) -> tuple[Any, T]:
    try:
        return parse(fields)
    except BaseException:
        await remove_files([str(stored.path)])
        raise


async def _receive(request: web.Request, daemon: Daemon, limit: int,
                   form: FormBody) -> tuple[StoredFile, dict[str, list[str]]]:
    """Stream the file to disk and collect the text fields, whichever order the parts come in. Whatever
    goes wrong, the partly or wholly written file is removed."""
    if not request.content_type.startswith("multipart/"):
        raise _missing_file(form)
    stored, fields = None, {}
    try:
        with _malformed_body_is_a_400():
            reader = await request.multipart()
            while (part := await arrives_in_time(request, reader.next())) is not None:
                if not isinstance(part, BodyPartReader):
                    continue
                if part.name == form.file_field and stored is None:
                    stored = await _store_part(request, daemon, part, limit)
                elif part.name in form.text_fields:
                    fields.setdefault(part.name, []).append(await _small_text(request, part))
        if stored is None:
            raise _missing_file(form)
        if stored.size == 0:
            raise ApiError(400, "The uploaded file is empty")
        return stored, fields
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


async def _small_text(request: web.Request, part: BodyPartReader, limit: int = FIELD_BYTES) -> str:
    """A text field, read in bounded memory: a field larger than ``limit`` is refused."""
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
        return await daemon.receive(lambda: arrives_in_time(request, part.read_chunk(UPLOAD_READ_BYTES)),
                                    part.filename or "upload", limit)
    except UploadTooLarge as error:
        raise ApiError(413, str(error)) from None


def form_values(fields: dict[str, list[str]], spec: tuple[Field, ...]) -> dict[str, Any]:
    """The form's text fields converted to their types (the last of a repeated field counts) and checked
    like a JSON body's; every problem at once. A ``list`` field is left to the route."""
    converted: dict[str, Any] = {}
    errors = []
    for field in spec:
        if field.name not in fields or field.kind is list:
            continue
        try:
            converted[field.name] = from_text(fields[field.name][-1], field.kind)
        except ValueError:
            errors.append(problem(("body", field.name), f"Input should be a valid {field.kind.__name__}",
                                  f"{field.kind.__name__}_parsing"))
    if errors:
        raise ValidationFailed(errors)
    return parse_object(converted, spec)


def _missing_file(form: FormBody) -> Exception:
    return fail(("body", form.file_field), "Field required", "missing")
