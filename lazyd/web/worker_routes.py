"""The seed's external-worker route: a worker reports a job's state and upserts chunk texts."""

from __future__ import annotations

from aiohttp import web

from ..auth import secrets_equal
from ..jobs.states import STATES, ChunkResult, TransitionRefused
from ..jobs.transcripts import one_transcription_json
from ..store import Transcription
from ..validation import ID_RANGE, Field, fail, parse_object
from .body import json_object
from .errors import conflict, forbidden, not_found
from .keys import CONFIG, DAEMON

NEW_CHUNK = (Field("text", str, required=True), Field("chunk_no", int, required=True))
REPORT = (
    Field("transcription_id", int, required=True, bounds=ID_RANGE),
    Field("current_state", str, choices=STATES),
    Field("new_chunk", dict, fields=NEW_CHUNK),
)


def require_worker_token(request: web.Request) -> None:
    """``secret_worker_token`` (query, as the seed had it) or ``X-Worker-Token``; closed when unset."""
    configured = request.app[CONFIG].auth.worker_token
    if not configured:
        raise forbidden("The worker token is not configured on this server (auth.worker_token)")
    given = request.headers.get("X-Worker-Token") or request.query.get("secret_worker_token")
    if not secrets_equal(given, configured):
        raise forbidden("Invalid worker token")


async def transcription_status(request: web.Request) -> web.Response:
    require_worker_token(request)
    body = await json_object(request)
    job = await Transcription.aget_or_none(Transcription.id == body["transcription_id"])
    if job is None:
        raise not_found("Transcription not found")
    daemon = request.app[DAEMON]
    try:  # the chunk first: a report of the last chunk together with "completed" keeps the chunk
        if "new_chunk" in body:
            await _save_reported_chunk(request, job, body["new_chunk"])
        if "current_state" in body:
            await daemon.states.report(job.id, body["current_state"])
    except TransitionRefused as error:
        raise conflict(str(error)) from None
    latest = await Transcription.aget_by_id(job.id)
    return web.json_response({"transcription": await one_transcription_json(daemon.store, latest)})


async def _save_reported_chunk(request: web.Request, job: Transcription, raw: dict) -> None:
    chunk = parse_object(raw, NEW_CHUNK, loc=("body", "new_chunk"))
    number, nominal = chunk["chunk_no"], _nominal_plan(job.audio_len_secs, job.chunk_size_secs)
    planned = job.chunk_plan or nominal
    if not 0 <= number < max(len(planned), len(nominal)):
        raise fail(("body", "new_chunk", "chunk_no"), f"Value error, chunk_no must be between 0 and "
                   f"{max(len(planned), len(nominal)) - 1} for this transcription", "value_error")
    # lazyd's plan merges a short tail into the chunk before it; a worker cutting as the seed did may
    # still report that tail as a chunk of its own, at its nominal place
    start, end = (planned if number < len(planned) else nominal)[number]
    result = ChunkResult(chunk["chunk_no"], start, end, chunk["text"], [])
    if not await request.app[DAEMON].states.save_chunk(job.id, None, result):
        raise conflict(f"Transcription {job.id} is finished: no chunk can be added")


def _nominal_plan(length: float, size: float) -> list[list[float]]:
    """The seed's plan: chunk N starts at N * size, up to chunk ``floor(length / size)``."""
    return [[n * size, min((n + 1) * size, length)] for n in range(int(length // size) + 1)]
