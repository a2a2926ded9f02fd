"""The access log: one line per request with its method, route, target, status, duration, request id and
user id, and the secrets some routes take in the query string masked.

The seed's clients send ``secret_admin_token`` and ``secret_worker_token`` as query parameters, and
browsers pass the WebSocket's bearer token as ``?token=``; none of them may reach a log file. Headers
(where the bearer tokens and keys travel) are never logged.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .errors import REQUEST_ID
from .request_metrics import route_label
from .security import CALLER_ID

SECRET_PARAMETERS = frozenset({"token", "secret_admin_token", "secret_worker_token"})
MASK = "***"


def loggable_target(request: web.BaseRequest) -> str:
    """The request's path and query, with every secret parameter's value masked."""
    url = request.rel_url
    if not any(name in SECRET_PARAMETERS for name in url.query):
        return str(url)
    return str(url.with_query([(name, MASK if name in SECRET_PARAMETERS else value)
                               for name, value in url.query.items()]))


class AccessLogger(AbstractAccessLogger):
    """One line per request; the same fields go to a JSON log as keys (see :mod:`lazyd.logs`)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        fields = {
            "request_id": request.get(REQUEST_ID, "-"),
            "method": request.method,
            "route": route_label(request),
            "target": loggable_target(request),
            "status": response.status,
            "duration_ms": round(time * 1000, 1),
            "user_id": request.get(CALLER_ID),
            "client": request.remote,
        }
        self.logger.info("%(request_id)s %(method)s %(target)s -> %(status)s in %(duration_ms)s ms "
                         "(route %(route)s, user %(user_id)s, from %(client)s)", fields, extra={"fields": fields})

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
