"""Health: the seed's ``GET /`` and the detailed ``GET /health``."""

from __future__ import annotations

from aiohttp import web

from .keys import DAEMON
from .security import is_admin_caller
from .shapes import health_json, public_health_json


async def health(request: web.Request) -> web.Response:
    return web.json_response({"api": True, "database": await request.app[DAEMON].store.healthy()})


async def details(request: web.Request) -> web.Response:
    """Whether it works: the database, the backend chosen and why, how many workers are alive, the queue.
    An admin (the admin token, or an admin's bearer token) also sees where things are: the database URL,
    the host, the worker processes and their models, the inboxes' folders. Anyone else sees no path, no
    process id and no URL."""
    status = await request.app[DAEMON].status()
    return web.json_response(health_json(status) if await is_admin_caller(request) else public_health_json(status))
