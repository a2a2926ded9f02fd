"""One error shape for every failure: ``{"detail": ...}``, as the seed API answered."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..validation import ValidationFailed

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID = web.RequestKey("request_id", str)
"""Where :func:`error_middleware` keeps the request's id for :func:`tag_response`."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A client-facing error with a status and a ``detail`` message."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def unauthorized(detail: str) -> ApiError:
    return ApiError(401, detail, {"WWW-Authenticate": "Bearer"})


def forbidden(detail: str) -> ApiError:
    return ApiError(403, detail)


def not_found(detail: str) -> ApiError:
    return ApiError(404, detail)


def conflict(detail: str) -> ApiError:
    return ApiError(409, detail)


NO_SNIFFING = {"X-Content-Type-Options": "nosniff"}
"""On every response: browsers must not guess a content type other than the one sent."""


def error_response(status: int, detail: object, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"detail": detail}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every exception into the seed's JSON shape; give the request the id its response will carry."""
    request_id = request[REQUEST_ID] = secrets.token_hex(8)
    try:
        response = await handler(request)
    except ApiError as error:
        response = error_response(error.status, error.detail, error.headers)
    except ValidationFailed as error:
        response = error_response(422, error.errors)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        response = error_response(error.status, _plain(error), _kept_headers(error))
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        raise
    except Exception:
        log.exception("unhandled error in %s %s (request id %s)", request.method, request.path, request_id)
        response = error_response(500, f"Internal server error (request id {request_id})")
    return response


async def tag_response(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every response, a streamed one too, carries its request id and tells
    browsers not to guess a content type other than the one sent."""
    if REQUEST_ID in request:
        response.headers[REQUEST_ID_HEADER] = request[REQUEST_ID]
    response.headers.update(NO_SNIFFING)


def _plain(error: web.HTTPException) -> str:
    """aiohttp's own message without its ``404: `` status prefix."""
    text = error.text or error.reason
    prefix = f"{error.status}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def _kept_headers(error: web.HTTPException) -> dict[str, str]:
    return {name: value for name, value in error.headers.items() if name in ("Allow", "WWW-Authenticate")}
