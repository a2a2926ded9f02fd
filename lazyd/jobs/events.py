"""Live events for WebSocket clients: per-user delivery, sequence numbers and replay after a reconnect.

Every event gets the next number of its user's sequence in this daemon's stream: numbers say nothing
about other users' activity. The last ``capacity`` events of each user are kept, so a client that
reconnects with the last number it saw gets exactly what it missed; when that is no longer available (or
the stream changed because the daemon restarted) it is told to resynchronise instead.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    seq: int
    user_id: int
    type: str
    data: dict[str, Any]

    def to_json(self, stream: str) -> dict[str, Any]:
        return {"seq": self.seq, "stream": stream, "type": self.type, **self.data}


class Subscribers:
    """The local listeners of each user's events: one queue per WebSocket (or waiting request)."""

    def __init__(self, queue_size: int = 1_000) -> None:
        self._queue_size = queue_size
        self._queues: dict[int, set[asyncio.Queue[Event | None]]] = {}

    def listening(self, user_id: int) -> bool:
        return bool(self._queues.get(user_id))

    def users(self) -> list[int]:
        return list(self._queues)

    def deliver(self, event: Event) -> None:
        """A subscriber that cannot keep up is cut off (it reconnects and replays) rather than slowing us."""
        for queue in list(self._queues.get(event.user_id, ())):
            if queue.qsize() >= self._queue_size - 1:
                log.warning("dropping a WebSocket subscriber that fell %d events behind", queue.qsize())
                self._drop(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait(event)

    def _drop(self, queue: asyncio.Queue[Event | None]) -> None:
        for queues in self._queues.values():
            queues.discard(queue)

    @contextmanager
    def subscribe(self, user_id: int) -> Iterator[asyncio.Queue[Event | None]]:
        """A queue of the user's events from now on; ``None`` in it means "you were too slow, reconnect"."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._queues.setdefault(user_id, set()).add(queue)
        try:
            yield queue
        finally:
            self._drop(queue)
            if not self._queues.get(user_id):
                self._queues.pop(user_id, None)


class LiveEvents(Protocol):
    """What the daemon publishes to and what the WebSocket and waiting requests read from: this daemon's
    own :class:`EventHub`, or the :class:`~lazyd.jobs.shared_events.SharedEventHub` of every daemon on one
    PostgreSQL database."""

    stream: str

    def publish(self, user_id: int, type_: str, **data: Any) -> None: ...

    def subscription(self, user_id: int) -> AbstractAsyncContextManager[asyncio.Queue[Event | None]]: ...

    async def replay(self, user_id: int, stream: str, since: int) -> list[Event] | None:
        """The user's events after ``since`` in ``stream``, or ``None`` when they cannot all be replayed."""

    async def latest(self, user_id: int) -> int:
        """The number of the user's latest event, 0 before their first."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class EventHub:
    """One daemon's events, in memory, with a bounded replay buffer per user; a new stream per run."""

    def __init__(self, capacity: int = 10_000, queue_size: int = 1_000) -> None:
        self.stream = secrets.token_hex(6)
        self._capacity = capacity
        self._last_seq: dict[int, int] = {}
        self._recent: dict[int, deque[Event]] = {}
        self._subscribers = Subscribers(queue_size)

    def last_seq(self, user_id: int) -> int:
        """The number of the user's latest event, 0 before their first."""
        return self._last_seq.get(user_id, 0)

    def publish(self, user_id: int, type_: str, **data: Any) -> Event:
        seq = self._last_seq[user_id] = self.last_seq(user_id) + 1
        event = Event(seq, user_id, type_, data)
        self._recent.setdefault(user_id, deque(maxlen=self._capacity)).append(event)
        self._subscribers.deliver(event)
        return event

    def subscribe(self, user_id: int) -> AbstractContextManager[asyncio.Queue[Event | None]]:
        return self._subscribers.subscribe(user_id)

    @asynccontextmanager
    async def subscription(self, user_id: int) -> AsyncIterator[asyncio.Queue[Event | None]]:
        with self.subscribe(user_id) as queue:
            yield queue

    def missed(self, user_id: int, stream: str, since: int) -> list[Event] | None:
        """The user's events after ``since`` in ``stream``, or ``None`` when they cannot all be replayed."""
        last = self.last_seq(user_id)
        if stream != self.stream or since > last:
            return None
        recent = self._recent.get(user_id, ())
        oldest = recent[0].seq if recent else last + 1
        if since + 1 < oldest:
            return None
        return [event for event in recent if event.seq > since]

    async def replay(self, user_id: int, stream: str, since: int) -> list[Event] | None:
        return self.missed(user_id, stream, since)

    async def latest(self, user_id: int) -> int:
        return self.last_seq(user_id)

    async def start(self) -> None:
        """Nothing to start: it lives in this process."""

    async def close(self) -> None:
        """Nothing to close."""
