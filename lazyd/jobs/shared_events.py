"""Live events across the daemons of one PostgreSQL database: a client connected to any of them sees the
events of jobs that any of them runs, and replays what it missed from any of them.

``publish`` stays synchronous and instant for its callers (the state machine, the scheduler): events go to
an outbox that one task writes to the event log in batches. Every daemon learns of new events through
``NOTIFY`` and reads, for each user one of its clients follows, the events above the last one it handed
on, so order and completeness per user do not depend on notifications arriving or on which daemon wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from ..aio import stop_task
from ..store import DATABASE_ERRORS
from ..store.event_log import EventLog, LoggedEvent
from .events import Event, Subscribers

log = logging.getLogger(__name__)

STREAM = "shared"
"""One stream for the whole database: numbers stay valid across daemons and restarts."""
BATCH = 500
RECONNECT_SECS = 2.0
PRUNE_EVERY_SECS = 60.0


class SharedEventHub:
    """:class:`~lazyd.jobs.events.LiveEvents` through the database's event log."""

    def __init__(self, url: str, keep_secs: float = 3600.0, queue_size: int = 1_000,
                 outbox_limit: int = 100_000) -> None:
        self.stream = STREAM
        self._log = EventLog(url)
        self._keep_secs = keep_secs
        self._subscribers = Subscribers(queue_size)
        self._outbox: asyncio.Queue[tuple[int, str, dict[str, Any]] | None] = asyncio.Queue()
        """Events waiting to be stored; ``None`` tells the writer to stop once it has stored those before."""
        self._outbox_limit = outbox_limit
        self._handed_on: dict[int, int] = {}
        """For each user a local client follows: the number of the last event handed to the subscribers."""
        self._readers: dict[int, asyncio.Task[None]] = {}
        self._again: set[int] = set()
        self._writer: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifetime -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._log.open(self._notified, self._lost)
        self._writer = asyncio.create_task(self._write_outbox(), name="events: writing")
        self._tasks = [asyncio.create_task(self._prune(), name="events: pruning")]

    async def close(self) -> None:
        """Store what is still in the outbox (for up to two seconds), then disconnect. The writer is never
        cancelled inside a transaction while it has time: a half-written batch would hold its locks."""
        if self._writer is not None:
            self._outbox.put_nowait(None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._writer), 2.0)
            await stop_task(self._writer)
        for task in [*self._tasks, *self._readers.values()]:
            await stop_task(task)
        await self._log.close()

    def _lost(self) -> None:
        log.warning("lost the connection that listens for other daemons' events; reconnecting")
        self._tasks.append(asyncio.create_task(self._listen_again(), name="events: listening again"))

    async def _listen_again(self) -> None:
        while True:
            try:
                await self._log.listen()
            except (*DATABASE_ERRORS, ConnectionError):
                await asyncio.sleep(RECONNECT_SECS)
                continue
            for user_id in self._subscribers.users():  # whatever was notified meanwhile
                self._notified(user_id)
            return

    # -- publishing ---------------------------------------------------------------------------------------

    def publish(self, user_id: int, type_: str, **data: Any) -> None:
        if self._outbox.qsize() >= self._outbox_limit:
            log.error("dropping a live event: %d are waiting for the database", self._outbox.qsize())
            return
        self._outbox.put_nowait((user_id, type_, data))

    async def _write_outbox(self) -> None:
        """Store the outbox in batches, in order, until told to stop."""
        while True:
            batch: list[tuple[int, str, dict[str, Any]]] = []
            item = await self._outbox.get()
            while item is not None:
                batch.append(item)
                if self._outbox.empty() or len(batch) >= BATCH:
                    break
                item = self._outbox.get_nowait()
            if batch:
                await self._store(batch)
            if item is None:
                return

    async def _store(self, batch: list[tuple[int, str, dict[str, Any]]]) -> None:
        while True:
            try:
                await self._log.append(batch)
                return
            except (*DATABASE_ERRORS, ConnectionError) as error:
                log.warning("could not store %d live events (%s); retrying", len(batch), error)
                await asyncio.sleep(RECONNECT_SECS)

    async def _prune(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY_SECS)
            try:
                await self._log.prune(self._keep_secs)
            except (*DATABASE_ERRORS, ConnectionError) as error:
                log.warning("could not prune old live events: %s", error)

    # -- following ----------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscription(self, user_id: int) -> AsyncIterator[asyncio.Queue[Event | None]]:
        """Events handed on start after the latest one at subscribing; the caller replays up to there."""
        with self._subscribers.subscribe(user_id) as queue:
            if user_id not in self._handed_on:
                self._handed_on[user_id] = await self._log.latest(user_id)
            try:
                yield queue
            finally:
                if not self._subscribers.listening(user_id):
                    self._handed_on.pop(user_id, None)

    def _notified(self, user_id: int) -> None:
        if user_id not in self._handed_on:
            return
        if user_id in self._readers:
            self._again.add(user_id)  # the running read may have started before this commit
            return
        self._readers[user_id] = asyncio.create_task(self._hand_on(user_id), name=f"events: user {user_id}")

    async def _hand_on(self, user_id: int) -> None:
        try:
            while user_id in self._handed_on:
                self._again.discard(user_id)
                for logged in await self._log.after(user_id, self._handed_on[user_id]):
                    if user_id in self._handed_on:
                        self._handed_on[user_id] = logged.seq
                        self._subscribers.deliver(_event(logged))
                if user_id not in self._again:
                    return
        except (*DATABASE_ERRORS, ConnectionError) as error:
            log.warning("could not read the live events of user %d: %s", user_id, error)
        finally:
            self._readers.pop(user_id, None)

    async def replay(self, user_id: int, stream: str, since: int) -> list[Event] | None:
        latest = await self._log.latest(user_id)
        if stream != self.stream or since > latest:
            return None
        events = await self._log.after(user_id, since)
        if since < latest and (not events or events[0].seq != since + 1):
            return None  # pruned
        return [_event(logged) for logged in events]

    async def latest(self, user_id: int) -> int:
        return await self._log.latest(user_id)


def _event(logged: LoggedEvent) -> Event:
    return Event(logged.seq, logged.user_id, logged.type, logged.data)
