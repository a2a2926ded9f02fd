"""Health: the seed's ``GET /`` and the detailed ``GET /health``."""

from __future__ import annotations

from aiohttp import web

from .keys import DAEMON
from .shapes import health_json


async def health(request: web.Request) -> web.Response:
    return web.json_response({"api": True, "database": await request.app[DAEMON].store.healthy()})


async def details(request: web.Request) -> web.Response:
    """What runs here: the database, the backend chosen and why, the workers, the queue, the inboxes."""
    return web.json_response(health_json(await request.app[DAEMON].status()))
