"""Health: the seed's ``GET /``."""

from __future__ import annotations

from aiohttp import web

from .keys import STORE


async def health(request: web.Request) -> web.Response:
    return web.json_response({"api": True, "database": await request.app[STORE].healthy()})
