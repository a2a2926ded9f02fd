"""Reading request bodies and query strings into validated values."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiohttp import web

from ..validation import INT64_MAX, fail, parse_json, parse_object
from .api import Param, body_fields, param
from .errors import ApiError
from .keys import CONFIG

T = TypeVar("T")

PARSE_IN_THREAD_BYTES = 64 * 1024
"""Bodies larger than this are decoded in a thread: a hostile one of a megabyte takes a few hundred ms."""
MAX_PAGE_SIZE = 1000
"""The most items one page of lazyd's own listings holds; the seed's routes take any size, as the seed did."""
PAGE = Param("page", int, default=1, ge=1, description="The page, from 1")
SIZE = Param("size", int, default=50, ge=1, le=MAX_PAGE_SIZE, description="Items per page")
SEED_SIZE = Param("size", int, default=50, ge=1, description="Items per page (any number, as the seed took)")


async def json_body(request: web.Request) -> Any:
    """The decoded JSON body, the one way every route reads one (:func:`lazyd.validation.parse_json`).

    413 when it is larger than ``[server] max_json_body_kb``; 400, as the seed answered, when it is not
    UTF-8 text at all; 422 ``json_invalid`` when it is text but not JSON within lazyd's limits.
    """
    raw = await arrives_in_time(request, request.read())
    if not raw.strip():
        raise fail(("body",), "Field required", "missing")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "There was an error parsing the body: it is not UTF-8 text") from None
    if len(raw) > PARSE_IN_THREAD_BYTES:
        return await asyncio.to_thread(parse_json, text)
    return parse_json(text)


async def arrives_in_time(request: web.Request, reading: Awaitable[T]) -> T:
    """What ``reading`` (a piece of ``request``'s body) gives, or 408 when nothing comes for
    ``[server] body_idle_timeout_secs``: a client that sends half a body and stalls must not hold the
    connection and a partly written file for ever. A slow but steady upload is not cut off."""
    timeout_s = request.app[CONFIG].server.body_idle_timeout_secs
    try:
        async with asyncio.timeout(timeout_s):
            return await reading
    except TimeoutError:
        raise ApiError(408, f"The request body stalled: nothing arrived for {timeout_s:g} s") from None


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as the request's endpoint declares it (:class:`lazyd.web.api.JsonBody`), checked."""
    return parse_object(await json_body(request), body_fields(request))


def pagination(request: web.Request) -> tuple[int, int]:
    """The seed's ``page`` (>= 1, default 1) and ``size`` (>= 1, default 50) query parameters
    (:data:`PAGE` and :data:`SIZE` or :data:`SEED_SIZE`).

    The page is bounded so that its row offset fits in a database integer.
    """
    size, page = param(request, "size"), param(request, "page")
    if page > (last := INT64_MAX // size + 1):
        raise fail(("query", "page"), f"Input should be less than or equal to {last}", "less_than_equal")
    return page, size
