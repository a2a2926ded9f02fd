"""The HTTP server around the app: requests aiohttp cannot parse are answered in the API's error shape.

aiohttp answers a request it could not parse (headers over its 8 KiB limit, a malformed request line)
itself, before any middleware runs, in plain text and with an error-level traceback in the log. A client
of lazyd's API gets ``{"detail": ...}`` there as everywhere else, and the log gets one line.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from .errors import NO_SNIFFING, error_response

log = logging.getLogger(__name__)


class ApiRequestHandler(RequestHandler):
    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            super().handle_error(request, status, exc, message)  # logs the traceback; raises if a response began
            detail = HTTPStatus(status).phrase
        else:
            if request.writer.output_size > 0:  # as aiohttp's: a response has begun, the connection is broken
                raise ConnectionError("Response is sent already, cannot send another response with the error")
            status, detail = _why_unreadable(status, exc, message)
            log.info("refused an unreadable request from %s: %s", request.remote, detail)
        response = error_response(status, detail, NO_SNIFFING)
        response.force_close()
        return response


class ApiServer(web.Server):
    def __call__(self) -> RequestHandler:
        return ApiRequestHandler(self, loop=self._loop, **self._kwargs)


class ApiRunner(web.AppRunner):
    """``web.AppRunner`` whose connections use :class:`ApiRequestHandler`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = ApiServer  # the app built it with its own arguments; only the handler class changes
        return server


def _why_unreadable(status: int, exc: BaseException | None, message: str | None) -> tuple[int, str]:
    """The status and a short reason; aiohttp's own messages quote the offending bytes, which help nobody."""
    if isinstance(exc, LineTooLong):
        return (HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"The request line or a header is longer than {exc.args[1]} bytes")
    lines = (message or "").strip().splitlines()
    return status, (lines[0].strip() if lines else HTTPStatus(status).phrase)
