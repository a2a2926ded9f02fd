"""Every HTTP request counted and timed for ``GET /metrics``, by method, route template and status."""

from __future__ import annotations

import time

from aiohttp import web

from .api import ENDPOINT
from .errors import Handler
from .keys import DAEMON

UNMATCHED = "unmatched"
"""The route label of a request no route took (a 404 or 405 from the router): never the raw path, which
would give every probe for a random URL a series of its own."""


def route_label(request: web.BaseRequest) -> str:
    """The route template the request was routed to, or :data:`UNMATCHED`."""
    return request[ENDPOINT].path if ENDPOINT in request else UNMATCHED


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The outermost middleware: it sees every answer, errors included, in its final status."""
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as error:
        status = error.status
        raise
    finally:
        request.app[DAEMON].metrics.request_answered(request.method, route_label(request), status,
                                                     time.monotonic() - started)
