"""The store: one async peewee database (SQLite by default, PostgreSQL by URL), migrated on open."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import asyncpg
import peewee
from playhouse.pwasyncio import AsyncPostgresqlDatabase, AsyncSqliteDatabase

from ..config import mask_url_password
from ..files import PRIVATE_FILE_MODE, make_private_dir
from .migrations import LATEST_VERSION, SchemaTooNew, current_version, upgrade
from .models import (INBOX_DONE, INBOX_FAILED, INBOX_WAITING, MODELS, ApiKey, InboxFile, Node, SchemaVersion,
                     SegmentText, Transcription, TranscriptionChunk, User, segment_rows, utcnow)

log = logging.getLogger(__name__)

DATABASE_ERRORS: tuple[type[Exception], ...] = (peewee.PeeweeException, OSError, asyncpg.PostgresError)
"""What a query raises when the database is away or refuses it; pwasyncio passes asyncpg's errors unwrapped."""

SQLITE_PRAGMAS = {
    "busy_timeout": 10_000,  # first, so that the pragmas below wait for another process's lock
    "journal_mode": "wal",
    "synchronous": "full",  # a finished chunk must survive power loss, not only a crash
    "foreign_keys": 1,
}


class StoreError(RuntimeError):
    """The database URL is not usable."""


class Store:
    """An open, migrated database with lazyd's models bound to it."""

    def __init__(self, db: peewee.Database, url: str) -> None:
        self.db = db
        self.url = url

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 10, timeout_s: float = 10.0, migrate: bool = True) -> Store:
        store = cls(connect_database(url, pool_size=pool_size, timeout_s=timeout_s), url)
        if (path := sqlite_path(url)) is not None:
            await asyncio.to_thread(_switch_to_wal, path, timeout_s)
        store.db.bind(MODELS)
        if migrate:
            try:
                applied = await store.db.run(upgrade, store.db)
            except BaseException:  # a refused or failed upgrade must not leave the pool's connections open
                await store.close()
                raise
            if applied:
                log.info("database upgraded to schema version %d", applied[-1])
        return store

    async def close(self) -> None:
        await self.db.close_pool()

    @property
    def is_postgres(self) -> bool:
        return isinstance(self.db, peewee.PostgresqlDatabase)

    def write_transaction(self) -> Any:
        """A transaction that takes the write lock up front.

        On SQLite a deferred transaction that reads and then writes can fail at once with "database is
        locked" when another connection wrote in between; ``BEGIN IMMEDIATE`` waits its turn instead.
        On PostgreSQL rows are locked explicitly with ``SELECT ... FOR UPDATE`` where it matters.
        """
        return self.db.atomic() if self.is_postgres else self.db.atomic(lock_type="IMMEDIATE")

    def describe(self) -> str:
        """The URL with any password masked, for logs and ``/health``."""
        return mask_url_password(self.url)

    async def list(self, query: peewee.Query) -> list[Any]:
        """Every row ``query`` selects."""
        return await self.db.list(query)

    async def count(self, query: peewee.SelectQuery) -> int:
        return await self.db.count(query)

    async def exists(self, query: peewee.SelectQuery) -> bool:
        return await self.db.exists(query)

    async def execute(self, query: peewee.Query) -> Any:
        """Run an update or delete; the number of rows it changed."""
        return await self.db.aexecute(query)

    async def run(self, work: Any, *args: Any) -> Any:
        """Run blocking peewee code (``work(*args)``) on a database connection, in the store's thread."""
        return await self.db.run(work, *args)

    async def page(self, query: peewee.ModelSelect, page: int, size: int, *order: Any) -> tuple[list[Any], int]:
        """One page of ``query`` in ``order`` (1-based ``page``), and how many rows the whole query has."""
        rows = await self.db.list(query.order_by(*order).paginate(page, size))
        return rows, await self.db.count(query.order_by())

    async def release_connection(self) -> None:
        """Give the calling task's pooled connection back before slow work that is not a query.

        playhouse.pwasyncio keeps one connection per task from its first query until the task ends. A
        request that then waits on bcrypt (or a long-lived task, such as a WebSocket) would hold it all that
        time, and a burst of such requests would drain the pool for everyone else.
        """
        if not self.db.in_transaction():
            await self.db.aclose()

    async def schema_version(self) -> int:
        return await self.db.run(current_version, self.db)

    async def healthy(self, timeout_s: float = 2.0) -> bool:
        """Whether a trivial query answers in time."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.db.aexecute_sql("SELECT 1")
            return True
        except (TimeoutError, *DATABASE_ERRORS):
            log.warning("database health check failed", exc_info=True)
            return False


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///path`` URL; ``None`` for any other URL."""
    return Path(url.removeprefix("sqlite://")) if url.startswith("sqlite:///") else None


def sqlite_files(path: Path) -> list[Path]:
    """The database file and the journal files SQLite keeps beside it."""
    return [path, *(path.with_name(path.name + ending) for ending in ("-wal", "-shm", "-journal"))]


def _switch_to_wal(path: Path, timeout_s: float) -> None:
    """Put a SQLite file into WAL mode once, before the pool opens it.

    Switching the journal mode needs an exclusive lock, and SQLite answers "database is locked" at once,
    without waiting out ``busy_timeout``, when that wait could deadlock: two daemons opening a new
    database together would see it. So the switch is made here, retried until ``timeout_s``; after it,
    the pool's own ``journal_mode`` pragma finds WAL already set and takes no lock.
    """
    deadline = time.monotonic() + timeout_s
    with closing(sqlite3.connect(path, timeout=timeout_s)) as connection:
        while True:
            try:
                connection.execute("PRAGMA journal_mode = wal")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def connect_database(url: str, *, pool_size: int = 10, timeout_s: float = 10.0) -> peewee.Database:
    """An async peewee database for ``sqlite:///path`` or ``postgresql://...``; nothing is opened yet.

    A new SQLite file is created private (0600) before SQLite opens it: its ``-wal`` and ``-shm`` files
    take the database file's permissions.
    """
    if (path := sqlite_path(url)) is not None:
        make_private_dir(path.parent)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE))
        return AsyncSqliteDatabase(str(path), pragmas=SQLITE_PRAGMAS, pool_size=pool_size, timeout=timeout_s)
    if url.startswith(("postgresql://", "postgres://")):
        return AsyncPostgresqlDatabase(url, pool_size=pool_size, acquire_timeout=timeout_s)
    raise StoreError(f"database.url must start with sqlite:/// or postgresql://, got {mask_url_password(url)!r}")


__all__ = [
    "DATABASE_ERRORS",
    "INBOX_DONE",
    "INBOX_FAILED",
    "INBOX_WAITING",
    "ApiKey",
    "InboxFile",
    "LATEST_VERSION",
    "Node",
    "SchemaTooNew",
    "SchemaVersion",
    "SegmentText",
    "Store",
    "StoreError",
    "Transcription",
    "TranscriptionChunk",
    "User",
    "connect_database",
    "segment_rows",
    "sqlite_files",
    "sqlite_path",
    "utcnow",
]
