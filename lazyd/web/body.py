"""Reading request bodies and query strings into validated values."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..validation import INT64_MAX, Field, fail, parse_object, query_int

MAX_PAGE_SIZE = 1000
"""The most items one page of lazyd's own listings holds; the seed's routes take any size, as the seed did."""


async def json_body(request: web.Request) -> Any:
    """The decoded JSON body; 422 ``json_invalid`` when it is not JSON, 413 when it is too large."""
    raw = await request.read()
    if not raw.strip():
        raise fail(("body",), "Field required", "missing")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        position = getattr(error, "pos", getattr(error, "start", 0))
        raise fail(("body", position), "JSON decode error", "json_invalid") from None


async def json_object(request: web.Request, *fields: Field) -> dict[str, Any]:
    return parse_object(await json_body(request), fields)


def pagination(request: web.Request, max_size: int = MAX_PAGE_SIZE) -> tuple[int, int]:
    """The seed's ``page`` (>= 1, default 1) and ``size`` (>= 1, default 50) query parameters.

    The page is bounded so that its row offset fits in a database integer.
    """
    size = query_int(request.query, "size", 50, ge=1, le=max_size)
    page = query_int(request.query, "page", 1, ge=1, le=INT64_MAX // size + 1)
    return page, size
