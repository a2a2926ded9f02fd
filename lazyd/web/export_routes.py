"""Exports: the seed's ``/transcript/export`` for every registered format, and ``GET /formats``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import PurePath
from urllib.parse import quote

from aiohttp import web

from ..exporters import ExportOptions, Exporter
from ..jobs.transcripts import load_transcript
from ..store import User
from ..validation import fail
from .api import Param, param
from .errors import conflict
from .keys import DAEMON, REGISTRY
from .security import owned_transcription

SEED_FORMATS = ("doc", "txt")
MIN_CUE_CHARS, MAX_CUE_CHARS, MAX_CUE_SECS = 10, 500, 60
_DEFAULTS = ExportOptions()
EXPORT_PARAMS = (
    Param("format", required=True, example="txt", description="An exporter's name; GET /formats lists them"),
    Param("timestamps", bool, default=False, description="Times before each paragraph (plain-text formats)"),
    Param("max_cue_chars", int, default=_DEFAULTS.max_cue_chars, ge=MIN_CUE_CHARS, le=MAX_CUE_CHARS,
          description="The longest subtitle cue, in characters"),
    Param("max_cue_secs", int, default=int(_DEFAULTS.max_cue_secs), ge=1, le=MAX_CUE_SECS,
          description="The longest subtitle cue, in seconds"),
)
STREAM_BATCH_BYTES = 64 * 1024


async def formats(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    listed = [{"name": name, "media_type": exporter.media_type, "suffix": exporter.suffix,
               "description": exporter.description, "plugin": registry.exporter_plugins[exporter.name]}
              for name in registry.exporters.names() if (exporter := registry.exporters.get(name))]
    return web.json_response({"formats": listed})


async def export(request: web.Request) -> web.StreamResponse:
    """The transcript rendered by the exporter ``format`` names, as an attachment.

    It is sent as the exporter renders it (:meth:`Exporter.stream`), a batch of pieces at a time, each
    batch rendered in a thread; an error in the first batch is still answered as an error.
    """
    user, job = await owned_transcription(request, "task_id")
    name = param(request, "format")
    exporter = _exporter(request, name)
    options = _options(request)
    transcript = await load_transcript(request.app[DAEMON].store, job)
    if not transcript.chunks:
        raise conflict(f"Transcription {job.id} has no finished chunk to export yet. Try again later.")
    pieces = exporter.stream(transcript, options)
    batch = await asyncio.to_thread(_next_batch, pieces)
    response = web.StreamResponse(headers={
        "Content-Type": exporter.media_type,
        "Content-Disposition": _attachment(_filename(user, name, exporter, transcript.title))})
    await response.prepare(request)
    while batch:
        await response.write(batch)
        batch = await asyncio.to_thread(_next_batch, pieces)
    await response.write_eof()
    return response


def _next_batch(pieces: Iterator[bytes], size: int = STREAM_BATCH_BYTES) -> bytes:
    """The rendering's next pieces, joined up to about ``size`` bytes; empty at the end."""
    batch = bytearray()
    for piece in pieces:
        batch += piece
        if len(batch) >= size:
            break
    return bytes(batch)


def _options(request: web.Request) -> ExportOptions:
    """``timestamps`` for the plain-text formats, the cue limits for subtitles."""
    return ExportOptions(timestamps=param(request, "timestamps"), max_cue_chars=param(request, "max_cue_chars"),
                         max_cue_secs=param(request, "max_cue_secs"))


def _exporter(request: web.Request, name: str) -> Exporter:
    exporters = request.app[REGISTRY].exporters
    exporter = exporters.get(name)
    if exporter is None:
        known = ", ".join(f"'{known}'" for known in exporters.names())
        raise fail(("query", "format"), f"Input should be one of {known}", "enum")
    return exporter


def _filename(user: User, name: str, exporter: Exporter, title: str) -> str:
    """The seed's ``<user id>.<format>`` for its two formats; the recording's name for the others."""
    if name in SEED_FORMATS:
        return f"{user.id}.{name}"
    return f"{PurePath(title).stem or 'transcript'}.{exporter.suffix}"


def _attachment(filename: str) -> str:
    """RFC 6266: a plain ASCII fallback, and the real name percent-encoded for clients that read it."""
    fallback = "".join(char if char.isascii() and char.isprintable() and char not in '"\\' else "_"
                       for char in filename)
    if fallback == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"
