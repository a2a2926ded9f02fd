"""Health: the seed's ``GET /`` and the detailed ``GET /health``."""

from __future__ import annotations

from aiohttp import web

from prometheus_client import CONTENT_TYPE_LATEST

from ..auth import secrets_equal
from .errors import forbidden, unauthorized
from .keys import CONFIG, DAEMON
from .security import bearer_token, from_this_machine, is_admin_caller
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


async def metrics(request: web.Request) -> web.Response:
    """Prometheus' text format (:mod:`lazyd.metrics`). Open to this machine; from elsewhere (or through a
    proxy) it takes ``[auth] metrics_token`` as the bearer."""
    if not from_this_machine(request):
        configured = request.app[CONFIG].auth.metrics_token
        if not configured:
            raise forbidden("/metrics answers this machine only: set [auth] metrics_token to scrape it from elsewhere")
        if not secrets_equal(bearer_token(request), configured):
            raise unauthorized("Invalid metrics token")
    daemon = request.app[DAEMON]
    body = await daemon.metrics.exposition(daemon.store)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
