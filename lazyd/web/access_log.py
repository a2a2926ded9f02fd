"""The access log, with the secrets some routes take in the query string masked.

The seed's clients send ``secret_admin_token`` and ``secret_worker_token`` as query parameters, and
browsers pass the WebSocket's bearer token as ``?token=``; none of them may reach a log file.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

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
    """One line per request: client, request line (secrets masked), status, bytes, seconds."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        major, minor = request.version
        self.logger.info('%s "%s %s HTTP/%s.%s" %s %s %.3fs', request.remote, request.method,
                         loggable_target(request), major, minor, response.status, response.body_length, time)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
