"""Taking files: a file is taken once it has settled, copied into the data directory and queued.

A file is complete when its size and modification time have not changed for ``settle_secs`` (inotify
events only make lazyd look sooner; a writer that closes and reopens the file between pieces is still
waited for), and it then has to probe as audio. Content already transcribed for the inbox's user (same
SHA-256) is not transcribed again: the new name gets the existing result.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..audio import AudioError
from ..config import InboxConfig
from ..jobs.ingest import NotARegularFile, StoredFile, UploadTooLarge, copy_file, inbox_quota
from ..jobs.states import CANCELLED, FINAL, PROCESSING_FAIL
from ..store import INBOX_DONE, INBOX_WAITING, InboxFile, Transcription, User
from .delivery import set_aside
from .watching import listing

if TYPE_CHECKING:
    from ..daemon import Daemon

log = logging.getLogger(__name__)


@dataclass
class Sighting:
    """What a file looked like when first seen in its current form."""

    size: int
    mtime: float
    since: float


class Intake:
    """The taking side of one inbox."""

    def __init__(self, spec: InboxConfig, owner: User, daemon: Daemon, poke: Callable[[], None]) -> None:
        self.spec = spec
        self.folder = spec.folder
        self.owner = owner
        self.daemon = daemon
        self.quota = inbox_quota(daemon.config, spec)
        self.poke = poke
        self._sightings: dict[str, Sighting] = {}

    async def scan(self) -> None:
        """Take every file that has settled; remember when the others were last seen changing."""
        found = await asyncio.to_thread(listing, self.folder)
        now = time.monotonic()
        for gone in set(self._sightings) - set(found):
            del self._sightings[gone]
        for name, (size, mtime) in sorted(found.items()):
            seen = self._sightings.get(name)
            if seen is None or (seen.size, seen.mtime) != (size, mtime):
                self._sightings[name] = Sighting(size, mtime, now)
            elif now - seen.since >= self.spec.settle_secs:
                del self._sightings[name]
                try:
                    await self._take(name, size, mtime)
                except OSError as error:  # unreadable for now (permissions, a share gone): try it again later
                    log.warning("inbox %s: cannot take %s yet: %s", self.folder, name, error)

    async def _take(self, name: str, size: int, mtime: float) -> None:
        if await self._already_taken(name, size, mtime):
            return
        config = self.daemon.config
        limit_mb = config.limits.max_upload_mb
        try:
            stored = await asyncio.to_thread(copy_file, self.folder / name, config.audio_path,
                                             limit_mb * 1024 * 1024)
        except FileNotFoundError:
            return  # moved away again before we got to it
        except UploadTooLarge:
            await self._reject(name, f"it is larger than the {limit_mb} MB limit ([limits] max_upload_mb)")
            return
        except NotARegularFile as error:
            await self._reject(name, error.strerror)
            return
        job = await self._existing_job(stored.sha256)
        if job is not None:
            await asyncio.to_thread(stored.path.unlink, True)
            log.info("inbox %s: %s has the content of transcription %d; reusing it", self.folder, name, job.id)
        else:
            job = await self._queue(name, stored)
            if job is None:
                return
        await InboxFile.acreate(inbox=str(self.folder), name=name, sha256=stored.sha256, size=size, mtime=mtime,
                                transcription=job.id, status=INBOX_WAITING)
        if job.current_state in FINAL:
            self.poke()

    async def _already_taken(self, name: str, size: int, mtime: float) -> bool:
        """The same file, unchanged, is in progress, or was delivered and stays in place (``after = "keep"``).

        A file that was delivered and moved away, or that failed, and now lies here again was put back on
        purpose: it is taken again (identical content then reuses the existing transcription).
        """
        settled = (InboxFile.status == INBOX_WAITING)
        if self.spec.after == "keep":
            settled |= (InboxFile.status == INBOX_DONE)
        row = await InboxFile.aget_or_none(InboxFile.inbox == str(self.folder), InboxFile.name == name,
                                           InboxFile.size == size, InboxFile.mtime == mtime, settled)
        return row is not None

    async def _existing_job(self, sha256: str) -> Transcription | None:
        """A transcription of the same content for this user that did not fail."""
        return await Transcription.aget_or_none(
            Transcription.creator == self.owner.id, Transcription.audio_sha256 == sha256,
            Transcription.current_state.not_in((PROCESSING_FAIL, CANCELLED)))

    async def _queue(self, name: str, stored: StoredFile) -> Transcription | None:
        try:
            job = await self.daemon.submit(stored, creator_id=self.owner.id, options=self.spec, source="inbox",
                                           quota=self.quota)
        except AudioError as error:
            await self._reject(name, str(error))
            return None
        log.info("inbox %s: queued %s as transcription %d", self.folder, name, job.id)
        self.daemon.metrics.inbox_files.labels(outcome="taken").inc()
        return job

    async def _reject(self, name: str, reason: str) -> None:
        """Not usable: set it aside with the reason, never drop it silently."""
        log.warning("inbox %s: %s is not taken: %s", self.folder, name, reason)
        self.daemon.metrics.inbox_files.labels(outcome="failed").inc()
        await asyncio.to_thread(set_aside, self.folder / name, self.folder / "failed", reason)
