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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    seq: int
    user_id: int
    type: str
    data: dict[str, Any]

    def to_json(self, stream: str) -> dict[str, Any]:
        return {"seq": self.seq, "stream": stream, "type": self.type, **self.data}


class EventHub:
    """In-process publish/subscribe with a bounded replay buffer per user."""

    def __init__(self, capacity: int = 10_000, queue_size: int = 1_000) -> None:
        self.stream = secrets.token_hex(6)
        self._capacity = capacity
        self._last_seq: dict[int, int] = {}
        self._recent: dict[int, deque[Event]] = {}
        self._queue_size = queue_size
        self._subscribers: dict[int, set[asyncio.Queue[Event | None]]] = {}

    def last_seq(self, user_id: int) -> int:
        """The number of the user's latest event, 0 before their first."""
        return self._last_seq.get(user_id, 0)

    def publish(self, user_id: int, type_: str, **data: Any) -> Event:
        seq = self._last_seq[user_id] = self.last_seq(user_id) + 1
        event = Event(seq, user_id, type_, data)
        self._recent.setdefault(user_id, deque(maxlen=self._capacity)).append(event)
        for queue in list(self._subscribers.get(user_id, ())):
            self._deliver(queue, event)
        return event

    def _deliver(self, queue: asyncio.Queue[Event | None], event: Event) -> None:
        """A subscriber that cannot keep up is cut off (it reconnects and replays) rather than slowing us."""
        if queue.qsize() >= self._queue_size - 1:
            log.warning("dropping a WebSocket subscriber that fell %d events behind", queue.qsize())
            self._drop(queue)
            queue.put_nowait(None)
            return
        queue.put_nowait(event)

    def _drop(self, queue: asyncio.Queue[Event | None]) -> None:
        for queues in self._subscribers.values():
            queues.discard(queue)

    @contextmanager
    def subscribe(self, user_id: int) -> Iterator[asyncio.Queue[Event | None]]:
        """A queue of the user's events from now on; ``None`` in it means "you were too slow, reconnect"."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._subscribers.setdefault(user_id, set()).add(queue)
        try:
            yield queue
        finally:
            self._drop(queue)
            if not self._subscribers.get(user_id):
                self._subscribers.pop(user_id, None)

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
