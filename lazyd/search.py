"""Full-text search over a user's transcripts, segment by segment: SQLite's FTS5 or PostgreSQL's text search.

Words are matched as they are written (the ``simple`` configuration, FTS5's ``unicode61`` tokenizer): no
stemming, which would be right for one language and wrong for the others a lecture may be in. Every word
of the query must be in the segment; the best matches come first (BM25 on SQLite, ``ts_rank`` on
PostgreSQL). A hit's snippet marks the matched words with :data:`MARK_START` and :data:`MARK_END`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .store import SegmentText, Store

MARK_START, MARK_END = "\x02", "\x03"
"""Around each matched word in a snippet: control characters no transcript holds, for a page to turn into
highlighting after escaping the rest."""
SNIPPET_WORDS = 16

_SQLITE_FROM = ("FROM segment_search JOIN segment_texts st ON st.id = segment_search.rowid "
                "JOIN transcriptions t ON t.id = st.transcript_id WHERE segment_search MATCH ? AND t.creator_id = ?")
_SQLITE_HITS = (f"SELECT st.transcript_id, t.filename, st.chunk_no, st.start_secs, st.end_secs, st.text, "
                f"snippet(segment_search, 0, char(2), char(3), '…', {SNIPPET_WORDS}) {_SQLITE_FROM} "
                "ORDER BY bm25(segment_search), st.transcript_id, st.chunk_no, st.segment_no LIMIT ? OFFSET ?")
_POSTGRES_FROM = ("FROM segment_texts st JOIN transcriptions t ON t.id = st.transcript_id, "
                  "websearch_to_tsquery('simple', %s) q WHERE to_tsvector('simple', st.text) @@ q AND t.creator_id = %s")
_POSTGRES_HITS = (f"SELECT st.transcript_id, t.filename, st.chunk_no, st.start_secs, st.end_secs, st.text, "
                  f"ts_headline('simple', st.text, q, %s) {_POSTGRES_FROM} "
                  "ORDER BY ts_rank(to_tsvector('simple', st.text), q) DESC, st.transcript_id, st.chunk_no, "
                  "st.segment_no LIMIT %s OFFSET %s")
_HEADLINE = f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords={SNIPPET_WORDS}, MinWords=4, MaxFragments=1"


@dataclass(frozen=True)
class Hit:
    transcription_id: int
    title: str
    chunk_no: int
    start: float
    end: float
    text: str
    snippet: str


async def search(store: Store, user_id: int, query: str, page: int, size: int) -> tuple[list[Hit], int]:
    """One page of ``user_id``'s segments that hold every word of ``query``, best first, and how many in all."""
    offset = (page - 1) * size
    if store.is_postgres:
        rows = await _raw(store, _POSTGRES_HITS, _HEADLINE, query, user_id, size, offset)
        total = await _raw(store, f"SELECT COUNT(*) {_POSTGRES_FROM}", query, user_id)
    else:
        words = fts5_words(query)
        rows = await _raw(store, _SQLITE_HITS, words, user_id, size, offset)
        total = await _raw(store, f"SELECT COUNT(*) {_SQLITE_FROM}", words, user_id)
    return [Hit(*row) for row in rows], total[0][0]


def fts5_words(query: str) -> str:
    """The query as FTS5 phrases, one per word, all required: FTS5's own syntax (``AND``, ``*``, ``:``,
    quotes) never reaches it, so no query can be malformed."""
    return " ".join('"' + word.replace('"', '""') + '"' for word in query.split())


async def _raw(store: Store, sql: str, *params: Any) -> list[tuple]:
    return await store.list(SegmentText.raw(sql, *params).tuples())
