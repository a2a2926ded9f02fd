"""``GET /search``: the caller's transcripts searched for words, hit by hit with the moment they are said."""

from __future__ import annotations

from aiohttp import web

from ..search import search
from ..validation import fail
from .api import Param, param
from .body import pagination
from .keys import DAEMON
from .security import current_user
from .shapes import SearchHitJson, page_json

MAX_QUERY_CHARS = 200
QUERY = Param("q", required=True, description="Words that must all be in a segment (case and accents as "
                                               "written; no stemming)")


async def search_transcripts(request: web.Request) -> web.Response:
    """Segments of the caller's transcriptions that hold every word, best first; each hit's ``snippet``
    marks the matched words with U+0002 and U+0003 (escape the rest, then turn those into highlighting)."""
    user = await current_user(request, api_key=True)
    query = param(request, "q").strip()
    if not query or len(query) > MAX_QUERY_CHARS:
        raise fail(("query", "q"), f"Value error, q must have 1 to {MAX_QUERY_CHARS} characters", "value_error")
    page, size = pagination(request)
    hits, total = await search(request.app[DAEMON].store, user.id, query, page, size)
    items = [SearchHitJson(transcription_id=hit.transcription_id, title=hit.title, chunk_order=hit.chunk_no,
                           start=hit.start, end=hit.end, text=hit.text, snippet=hit.snippet) for hit in hits]
    return web.json_response(page_json(page, size, total, "hits", items))
