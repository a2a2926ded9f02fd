"""Health: the seed's ``GET /`` and the detailed ``GET /health``."""

from __future__ import annotations

import peewee
from aiohttp import web

from ..store import Transcription
from .keys import BACKEND_STATUS, INBOXES, SCHEDULER, STORE


async def health(request: web.Request) -> web.Response:
    return web.json_response({"api": True, "database": await request.app[STORE].healthy()})


async def details(request: web.Request) -> web.Response:
    """What runs here: the database, the backend chosen and why, the workers, the queue, the inboxes."""
    store = request.app[STORE]
    healthy = await store.healthy()
    return web.json_response({
        "api": True,
        "database": {"ok": healthy, "url": store.describe()},
        "backend": _backend(request),
        "queue": await _queue_counts() if healthy else {},
        "inboxes": [{"path": str(inbox.folder), "user": inbox.owner.username, "outbox": str(inbox.outbox),
                     "watching": inbox.mode} for inbox in request.app[INBOXES]],
    })


def _backend(request: web.Request) -> dict:
    status = dict(request.app[BACKEND_STATUS])
    if scheduler := request.app.get(SCHEDULER):
        status.update(node=scheduler.owner, workers=scheduler.worker_descriptions(),
                      problem=scheduler.worker_problem or status.get("problem", ""))
    return status


async def _queue_counts() -> dict[str, int]:
    query = (Transcription.select(Transcription.current_state, peewee.fn.COUNT(Transcription.id).alias("n"))
             .group_by(Transcription.current_state))
    rows = await Transcription._meta.database.list(query.dicts())
    return {row["current_state"]: row["n"] for row in rows}
