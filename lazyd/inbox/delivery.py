"""Delivering results: transcripts into the outbox, the recording into ``done/`` or ``failed/``.

When a taken file's transcription completes, every configured format is written to the outbox atomically
(a hidden temporary file, then a rename) as ``<stem>.<suffix>`` (``<name>.<suffix>`` when another
recording shares the stem), and the recording goes to ``done/`` (or stays, with ``after = "keep"``); a
failed one goes to ``failed/`` with a ``.error.txt`` that says why.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Awaitable
from pathlib import Path

import peewee

from ..config import InboxConfig
from ..exporters import ExporterSet, ExportOptions
from ..jobs.states import COMPLETED, FINAL
from ..jobs.transcripts import load_transcript
from ..store import INBOX_DONE, INBOX_FAILED, INBOX_WAITING, InboxFile, Store, Transcription, utcnow

log = logging.getLogger(__name__)


class Delivery:
    """The delivering side of one inbox."""

    def __init__(self, spec: InboxConfig, store: Store, exporters: ExporterSet) -> None:
        self.spec = spec
        self.folder = spec.folder
        self.outbox = Path(spec.outbox).resolve()
        self.store = store
        self.exporters = exporters

    async def deliver_finished(self) -> None:
        """Every taken file whose transcription is final: outbox files and ``done/``, or ``failed/``.

        A file whose transcription was deleted before it finished goes to ``failed/`` too. A delivery that
        fails (an exporter's error, a full disk) is logged, leaves the file waiting and is tried again next
        round, without holding up the other files.
        """
        waiting = (InboxFile.inbox == str(self.folder)) & (InboxFile.status == INBOX_WAITING)
        finished = (InboxFile.select(InboxFile, Transcription).join(Transcription)
                    .where(waiting, Transcription.current_state.in_(FINAL)))
        orphaned = InboxFile.select().where(waiting, InboxFile.transcription.is_null())
        for row in await self.store.list(finished):
            await self._settle(row, self._deliver(row, row.transcription))
        for row in await self.store.list(orphaned):
            await self._settle(row, self._fail(row, "its transcription was deleted before it finished"))

    async def _settle(self, row: InboxFile, delivery: Awaitable[None]) -> None:
        try:
            await delivery
        except Exception:
            log.exception("inbox %s: could not deliver %s; trying again next round", self.folder, row.name)
            return
        row.update_date = utcnow()
        await row.asave()
        log.info("inbox %s: %s is %s", self.folder, row.name, row.status)

    async def _deliver(self, row: InboxFile, job: Transcription) -> None:
        if job.current_state != COMPLETED:
            await self._fail(row, job.last_error or f"the transcription ended {job.current_state}")
            return
        transcript = await load_transcript(self.store, job)
        stem = await self._output_stem(row.name)
        for name in self.spec.formats:
            exporter = self.exporters.get(name)
            body = await asyncio.to_thread(exporter.render, transcript, ExportOptions())
            await asyncio.to_thread(write_atomically, self.outbox / f"{stem}.{exporter.suffix}", body)
        if self.spec.after == "move":
            await asyncio.to_thread(move_into, self.folder / row.name, self.folder / "done")
        row.status = INBOX_DONE

    async def _output_stem(self, name: str) -> str:
        """The recording's name without its extension, or with it when another recording in this inbox
        shares the stem (``talk.mp3`` and ``talk.m4a``), so that neither's transcripts overwrite the other's."""
        stem = Path(name).stem
        prefix = f"{stem}."
        query = InboxFile.select(InboxFile.name).where(
            InboxFile.inbox == str(self.folder), InboxFile.name != name,
            peewee.fn.SUBSTR(InboxFile.name, 1, len(prefix)) == prefix)
        others = await self.store.list(query)
        return name if any(Path(other.name).stem == stem for other in others) else stem

    async def _fail(self, row: InboxFile, reason: str) -> None:
        await asyncio.to_thread(set_aside, self.folder / row.name, self.folder / "failed", reason)
        row.status, row.error = INBOX_FAILED, reason


def write_atomically(path: Path, body: bytes) -> None:
    """Write to a hidden temporary file beside ``path``, then rename it: readers see all or nothing."""
    draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(draft, "wb") as stream:
        stream.write(body)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(draft, path)


def move_into(source: Path, folder: Path) -> Path | None:
    """Move ``source`` into ``folder`` under a name not yet taken there; ``None`` if it is gone."""
    if not os.path.lexists(source):
        return None
    folder.mkdir(exist_ok=True)
    target, number = folder / source.name, 1
    while target.exists():
        number += 1
        target = folder / f"{source.stem} ({number}){source.suffix}"
    os.replace(source, target)
    return target


def set_aside(source: Path, folder: Path, reason: str) -> None:
    """Move an unusable or failed recording into ``folder`` with a ``.error.txt`` beside it that says why."""
    moved = move_into(source, folder)
    if moved is not None:
        write_atomically(moved.with_name(moved.name + ".error.txt"), (reason + "\n").encode("utf-8"))
