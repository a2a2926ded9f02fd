"""The live events of every daemon on one PostgreSQL database: a table numbered per user, and a
``NOTIFY`` that names the user whenever new ones are committed (PostgreSQL is the broker; the payload is a
user id, far under its 8000-byte limit, and the events are read from the table).

Each user's numbers come from one counter row, locked until the events are committed, so a user's events
become visible strictly in order, whichever daemon wrote them: a reader that has seen number N and reads
everything above it never skips one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

NEXT_NUMBER = """
    INSERT INTO live_event_counters (user_id, seq) VALUES ($1, 1)
    ON CONFLICT (user_id) DO UPDATE SET seq = live_event_counters.seq + 1
    RETURNING seq"""


@dataclass(frozen=True)
class LoggedEvent:
    user_id: int
    seq: int
    type: str
    data: dict[str, Any]


class EventLog:
    """A small pool of its own for writing and reading, and one connection that listens: a ``LISTEN``
    needs a connection that stays open, and events must not wait for the store's busy pool."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._on_notified: Callable[..., None] = lambda *args: None
        self._on_lost: Callable[[asyncpg.Connection], None] = lambda connection: None
        self.channel = ""

    async def open(self, on_notified: Callable[[int], None], on_lost: Callable[[], None]) -> None:
        """Connect, and call ``on_notified(user_id)`` whenever events of that user were committed and
        ``on_lost()`` when the listening connection breaks (notifications may have been missed meanwhile:
        :meth:`listen` again)."""
        self._pool = await asyncpg.create_pool(self._url, min_size=1, max_size=4)
        schema = await self._pool.fetchval("SELECT current_schema()")
        self.channel = f"lazyd_events.{schema}"  # daemons on other schemas of the server are other installs
        self._on_notified = lambda *args: on_notified(int(args[3]))
        self._on_lost = lambda connection: on_lost()
        await self.listen()

    async def listen(self) -> None:
        """(Re)open the listening connection."""
        await self._stop_listening()
        self._listener = await asyncpg.connect(self._url)
        await self._listener.add_listener(self.channel, self._on_notified)
        self._listener.add_termination_listener(self._on_lost)

    async def close(self) -> None:
        await self._stop_listening()
        if self._pool is not None:
            await self._pool.close()
        self._pool = None

    async def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.remove_termination_listener(self._on_lost)
            if not listener.is_closed():
                await listener.close()

    async def append(self, events: Iterable[tuple[int, str, dict[str, Any]]]) -> None:
        """Number and store ``(user_id, type, data)`` events in one transaction, then notify their users."""
        users = set()
        async with self._connected().acquire() as connection, connection.transaction():
            for user_id, type_, data in events:
                seq = await connection.fetchval(NEXT_NUMBER, user_id)
                await connection.execute(
                    "INSERT INTO live_events (user_id, seq, type, data, created_at) VALUES ($1, $2, $3, $4, now())",
                    user_id, seq, type_, json.dumps(data))
                users.add(user_id)
            for user_id in users:
                await connection.execute("SELECT pg_notify($1, $2)", self.channel, str(user_id))

    async def after(self, user_id: int, seq: int) -> list[LoggedEvent]:
        """The user's events numbered above ``seq``, in order."""
        rows = await self._connected().fetch(
            "SELECT seq, type, data FROM live_events WHERE user_id = $1 AND seq > $2 ORDER BY seq", user_id, seq)
        return [LoggedEvent(user_id, row["seq"], row["type"], json.loads(row["data"])) for row in rows]

    async def latest(self, user_id: int) -> int:
        """The number of the user's latest event, 0 before their first."""
        found = await self._connected().fetchval("SELECT seq FROM live_event_counters WHERE user_id = $1", user_id)
        return found or 0

    async def prune(self, keep_secs: float) -> int:
        """Forget events older than ``keep_secs``; a client away longer reloads instead of replaying."""
        status = await self._connected().execute(
            "DELETE FROM live_events WHERE created_at < now() - make_interval(secs => $1)", keep_secs)
        return int(status.split()[-1])

    def _connected(self) -> asyncpg.Pool:
        if self._pool is None:
            raise ConnectionError("the event log is not connected")
        return self._pool
