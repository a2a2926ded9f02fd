"""One error shape for every failure: ``{"detail": ...}``, as the seed API answered."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TypedDict

from aiohttp import web

from ..validation import ValidationFailed

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID = web.RequestKey("request_id", str)
"""Where :func:`error_middleware` keeps the request's id for :func:`tag_response`."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ErrorJson(TypedDict):
    detail: str


class Problem(TypedDict):
    loc: list[str | int]
    """Where: ``body``, ``query``, ``path`` or ``header``, then the field's name (and index)."""
    msg: str
    type: str


class ValidationErrorJson(TypedDict):
    detail: list[Problem]


class OpenAIErrorDetail(TypedDict):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorJson(TypedDict):
    error: OpenAIErrorDetail


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


OPENAI_PREFIX = "/v1/"
"""Routes under this prefix speak OpenAI's API, errors included (:func:`openai_error_response`)."""
OPENAI_CODES = {401: "invalid_api_key", 403: "permission_denied", 404: "not_found", 405: "method_not_allowed",
                408: "timeout", 409: "conflict", 413: "file_too_large", 415: "invalid_file_format"}


def openai_error_response(status: int, detail: object, headers: dict[str, str] | None = None) -> web.Response:
    """OpenAI's error shape, ``{"error": {"message", "type", "param", "code"}}``. A validation failure (a
    list of problems) is a 400 naming the first field at fault, as OpenAI answers a bad parameter."""
    param, code = None, OPENAI_CODES.get(status)
    if isinstance(detail, list):
        status, param, code = 400, str(detail[0]["loc"][-1]), detail[0]["type"]
        detail = "; ".join(f"{problem['loc'][-1]}: {problem['msg']}" for problem in detail)
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return web.json_response({"error": {"message": detail, "type": kind, "param": param, "code": code}},
                             status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every exception into the seed's JSON shape (OpenAI's under :data:`OPENAI_PREFIX`); give the
    request the id its response will carry."""
    request_id = request[REQUEST_ID] = secrets.token_hex(8)
    respond = openai_error_response if request.path.startswith(OPENAI_PREFIX) else error_response
    try:
        response = await handler(request)
    except ApiError as error:
        response = respond(error.status, error.detail, error.headers)
    except ValidationFailed as error:
        response = respond(422, error.errors)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        response = respond(error.status, _plain(error), _kept_headers(error))
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        raise
    except Exception:
        log.exception("unhandled error in %s %s (request id %s)", request.method, request.path, request_id)
        response = respond(500, f"Internal server error (request id {request_id})")
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
