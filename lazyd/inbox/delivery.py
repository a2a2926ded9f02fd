"""Delivering results: transcripts into the outbox, the recording into ``done/`` or ``failed/``.

When a taken file's transcription completes, every configured format is written to the outbox atomically
(a hidden temporary file, then a rename) as ``<stem>.<suffix>``, and the recording goes to ``done/`` (or
stays, with ``after = "keep"``); a failed one goes to ``failed/`` with a ``.error.txt`` that says why.

The stem is chosen once per file and kept in its row: the recording's name without its extension, or with
it when another recording shares the stem (``talk.mp3`` and ``talk.m4a``), or a numbered one, whichever
no other file delivered into the same outbox has, cut to fit the file system's name limit. A delivery
that keeps failing (a full disk) is tried again with growing pauses, logged once per cause, and after
:data:`DELIVERY_TRIES` tries the recording goes to ``failed/`` with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Collection
from dataclasses import dataclass
from pathlib import Path

from ..config import InboxConfig
from ..exporters import ExporterSet, ExportOptions
from ..jobs.states import COMPLETED, FINAL
from ..jobs.transcripts import load_transcript
from ..store import INBOX_DONE, INBOX_FAILED, INBOX_WAITING, InboxFile, Store, Transcription, utcnow

log = logging.getLogger(__name__)

DELIVERY_TRIES = 8
"""Failed deliveries of one file before it is set aside in ``failed/``."""
MAX_DELIVERY_PAUSE_SECS = 300.0
"""The longest wait between two tries of one delivery (the pause doubles from ``scan_secs``)."""
OUTBOX_FILE_MODE = 0o644
"""Transcripts are for the people who use the folders: readable as files made under the usual umask
are, while everything in the data directory is private to the daemon."""
DEFAULT_NAME_MAX = 255


@dataclass
class FailedDelivery:
    """How often a file's delivery failed, when to try again, and the last cause logged."""

    tries: int = 0
    next_try_at: float = 0.0
    cause: str = ""


class Delivery:
    """The delivering side of one inbox; ``sharing`` names every inbox folder that has the same outbox."""

    def __init__(self, spec: InboxConfig, store: Store, exporters: ExporterSet, sharing: Collection[str]) -> None:
        self.spec = spec
        self.folder = spec.folder
        self.outbox = Path(spec.outbox).resolve()
        self.store = store
        self.exporters = exporters
        self.sharing = tuple(sharing)
        self._failures: dict[int, FailedDelivery] = {}

    async def deliver_finished(self) -> None:
        """Every taken file whose transcription is final: outbox files and ``done/``, or ``failed/``.

        A file whose transcription was deleted before it finished goes to ``failed/`` too. A delivery that
        fails (an exporter's error, a full disk) leaves the file waiting and is tried again later, without
        holding up the other files.
        """
        waiting = (InboxFile.inbox == str(self.folder)) & (InboxFile.status == INBOX_WAITING)
        finished = (InboxFile.select(InboxFile, Transcription).join(Transcription)
                    .where(waiting, Transcription.current_state.in_(FINAL)))
        orphaned = InboxFile.select().where(waiting, InboxFile.transcription.is_null())
        for row in await self.store.list(finished):
            if self._due(row):
                await self._settle(row, self._deliver_or_give_up(row))
        for row in await self.store.list(orphaned):
            if self._due(row):
                await self._settle(row, self._fail(row, "its transcription was deleted before it finished"))

    def _due(self, row: InboxFile) -> bool:
        failure = self._failures.get(row.id)
        return failure is None or time.monotonic() >= failure.next_try_at

    async def _deliver_or_give_up(self, row: InboxFile) -> None:
        failure = self._failures.get(row.id)
        if failure is not None and failure.tries >= DELIVERY_TRIES:
            await self._fail(row, f"its transcripts could not be delivered ({failure.tries} tries): {failure.cause}; "
                                  "put it back into the inbox to try again")
        else:
            await self._deliver(row, row.transcription)

    async def _settle(self, row: InboxFile, delivery: Awaitable[None]) -> None:
        try:
            await delivery
        except Exception as error:
            self._note_failure(row, error)
            return
        self._failures.pop(row.id, None)
        row.update_date = utcnow()
        await row.asave()
        log.info("inbox %s: %s is %s", self.folder, row.name, row.status)

    def _note_failure(self, row: InboxFile, error: Exception) -> None:
        """Count the failure and pause before the next try; log a cause once, not every round."""
        failure = self._failures.setdefault(row.id, FailedDelivery())
        failure.tries += 1
        pause = min(self.spec.scan_secs * 2 ** failure.tries, MAX_DELIVERY_PAUSE_SECS)
        failure.next_try_at = time.monotonic() + pause
        cause = f"{type(error).__name__}: {error}"
        if cause != failure.cause:
            failure.cause = cause
            log.warning("inbox %s: could not deliver %s (try %d of %d); trying again in %g s", self.folder,
                        row.name, failure.tries, DELIVERY_TRIES, pause, exc_info=error)
        else:
            log.debug("inbox %s: %s failed again (try %d): %s", self.folder, row.name, failure.tries, cause)

    async def _deliver(self, row: InboxFile, job: Transcription) -> None:
        if job.current_state != COMPLETED:
            await self._fail(row, job.last_error or f"the transcription ended {job.current_state}")
            return
        transcript = await load_transcript(self.store, job)
        if not row.outbox_stem:
            row.outbox_stem = await self._choose_stem(row.name)
            await row.asave()
        for name in self.spec.formats:
            exporter = self.exporters.get(name)
            body = await asyncio.to_thread(exporter.render, transcript, ExportOptions())
            await asyncio.to_thread(write_atomically, self.outbox / f"{row.outbox_stem}.{exporter.suffix}", body)
        if self.spec.after == "move":
            await asyncio.to_thread(move_into, self.folder / row.name, self.folder / "done")
        row.status = INBOX_DONE

    async def _choose_stem(self, name: str) -> str:
        """A stem no file of another name delivered into this outbox has (a file put back under its own name
        gets its earlier one again), preferring the readable ones; see the module's docstring."""
        query = InboxFile.select(InboxFile.name, InboxFile.outbox_stem).where(InboxFile.inbox.in_(self.sharing))
        rows = await self.store.list(query)
        earlier = [row.outbox_stem for row in rows if row.name == name and row.outbox_stem]
        if earlier:
            return earlier[-1]
        taken = {row.outbox_stem.casefold() for row in rows if row.name != name and row.outbox_stem}
        stem = Path(name).stem
        shares_stem = any(Path(row.name).stem == stem for row in rows if row.name != name)
        longest = max(len(self.exporters.get(format_).suffix) for format_ in self.spec.formats)
        limit = await asyncio.to_thread(name_max, self.outbox) - len(".") - longest
        candidates = ([] if shares_stem else [fitted(stem, "", limit)]) + [fitted(name, "", limit)]
        for candidate in candidates:
            if candidate.casefold() not in taken:
                return candidate
        number = 2
        while (candidate := fitted(name, f" ({number})", limit)).casefold() in taken:
            number += 1
        return candidate

    async def _fail(self, row: InboxFile, reason: str) -> None:
        await asyncio.to_thread(set_aside, self.folder / row.name, self.folder / "failed", reason)
        row.status, row.error = INBOX_FAILED, reason


def name_max(folder: Path) -> int:
    """The longest file name, in bytes, that ``folder``'s file system takes. Blocking (it asks the system)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return DEFAULT_NAME_MAX


def fitted(base: str, ending: str, limit: int) -> str:
    """``base + ending``, with ``base`` cut at a character boundary so that the whole is at most ``limit``
    bytes as the file system stores it."""
    room = limit - len(os.fsencode(ending))
    return os.fsencode(base)[:max(room, 0)].decode("utf-8", "ignore") + ending


def write_atomically(path: Path, body: bytes, mode: int = OUTBOX_FILE_MODE) -> None:
    """Write to a hidden temporary file beside ``path``, then rename it: readers see all or nothing.

    The temporary name is short whatever ``path`` is called, so it fits wherever ``path`` fits; ``mode``
    is set on the file itself, whatever the daemon's umask.
    """
    draft = path.with_name(f".lazyd-{secrets.token_hex(6)}.tmp")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as stream:
            os.fchmod(stream.fileno(), mode)
            stream.write(body)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(draft, path)
    except BaseException:
        draft.unlink(missing_ok=True)
        raise


def move_into(source: Path, folder: Path) -> Path | None:
    """Move ``source`` into ``folder`` under a name not yet taken there; ``None`` if it is gone."""
    if not os.path.lexists(source):
        return None
    folder.mkdir(exist_ok=True)
    target, number, limit = folder / source.name, 1, name_max(folder)
    while os.path.lexists(target):
        number += 1
        target = folder / fitted(source.stem, f" ({number}){source.suffix}", limit)
    os.replace(source, target)
    return target


def set_aside(source: Path, folder: Path, reason: str) -> None:
    """Move an unusable or failed recording into ``folder`` with a ``.error.txt`` beside it that says why."""
    moved = move_into(source, folder)
    if moved is not None:
        note = fitted(moved.name, ".error.txt", name_max(folder))
        write_atomically(moved.with_name(note), (reason + "\n").encode("utf-8"))
