"""Watched folders: a recording dropped into an inbox comes back as transcripts in its outbox.

A file is taken only when it is complete: its size and modification time have not changed for
``settle_secs`` (inotify events only make lazyd look sooner; a writer that closes and reopens the file
between pieces is still waited for), and it then has to probe as audio. It is copied into the data
directory, so the user may move or delete the original at any time, and queued like an upload. Content
already transcribed for the inbox's user (same SHA-256) is not transcribed again: the new name gets the
existing result.

Every taken file has a row in ``inbox_files``, so a restart finishes what was in flight, delivers what
finished while the daemon was down, and never takes a file twice. When its transcription completes,
every configured format is written to the outbox atomically (a hidden temporary file, then a rename) as
``<stem>.<suffix>`` (``<name>.<suffix>`` when another recording shares the stem), and the recording goes
to ``done/`` (or stays, with ``after = "keep"``); a failed one goes to ``failed/`` with a ``.error.txt``
that says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peewee

from .audio import AudioError
from .config import Config, InboxConfig
from .exporters import ExportOptions, ExporterSet
from .jobs.ingest import StoredFile, copy_file, inbox_quota, queue_file
from .jobs.states import COMPLETED, FINAL, JobStates
from .jobs.views import load_transcript
from .store import InboxFile, Transcription, User, utcnow

log = logging.getLogger(__name__)

IGNORED_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".tmp", ".temp", ".swp", "~")
NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "afs")
DONE, FAILED, QUEUED = "done", "failed", "queued"
SETUP_RETRY_SECS = 10.0
"""Wait before trying again to make an inbox's folders (no permission yet, a share not reachable yet)."""


class InboxError(Exception):
    """An ``[[inbox]]`` entry cannot be used; the message names the folder and says why."""


def check_inbox(spec: InboxConfig, exporters: ExporterSet) -> None:
    """Refuse set-ups that cannot work: an outbox inside its inbox loops, an unknown format never appears."""
    inbox, outbox = spec.folder, Path(spec.outbox).resolve()
    if outbox == inbox or outbox.is_relative_to(inbox):
        raise InboxError(f"inbox {spec.path}: the outbox {spec.outbox} must not be the inbox or inside it")
    unknown = [name for name in spec.formats if exporters.get(name) is None]
    if unknown:
        raise InboxError(f"inbox {spec.path}: unknown format(s) {', '.join(unknown)}; "
                         f"known: {', '.join(exporters.names())}")
    if spec.after not in ("move", "keep"):
        raise InboxError(f"inbox {spec.path}: after must be \"move\" or \"keep\", not {spec.after!r}")
    if spec.watch not in ("auto", "inotify", "poll"):
        raise InboxError(f"inbox {spec.path}: watch must be auto, inotify or poll, not {spec.watch!r}")
    if not spec.formats:
        raise InboxError(f"inbox {spec.path}: formats is empty: name at least one, e.g. [\"txt\"]")
    if spec.scan_secs <= 0 or spec.settle_secs < 0:
        raise InboxError(f"inbox {spec.path}: scan_secs must be above 0 and settle_secs at least 0 "
                         f"(got {spec.scan_secs:g} and {spec.settle_secs:g})")


def is_candidate(name: str) -> bool:
    """Hidden files and partial downloads are never taken."""
    lowered = name.lower()
    return not name.startswith(".") and not lowered.endswith(IGNORED_SUFFIXES)


def filesystem_type(path: Path) -> str:
    """The type of the file system ``path`` is on, from /proc/self/mounts ("" when unknown)."""
    best, kind = "", ""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return ""
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3 and str(path).startswith(fields[1]) and len(fields[1]) > len(best):
            best, kind = fields[1], fields[2]
    return kind


@dataclass
class Sighting:
    """What a file looked like when first seen in its current form."""

    size: int
    mtime: float
    since: float


class Inbox:
    """One watched folder."""

    def __init__(self, spec: InboxConfig, owner: User, config: Config, states: JobStates,
                 exporters: ExporterSet, wake_scheduler: Callable[[], None]) -> None:
        self.spec = spec
        self.folder = spec.folder
        self.outbox = Path(spec.outbox).resolve()
        self.quota = inbox_quota(config, spec)
        self.owner = owner
        self.config = config
        self.states = states
        self.exporters = exporters
        self.wake_scheduler = wake_scheduler
        self.mode = ""
        self._poke = asyncio.Event()
        self._sightings: dict[str, Sighting] = {}

    def poke(self) -> None:
        """Look now (a file event, or a job that may be ours finished)."""
        self._poke.set()

    async def run(self) -> None:
        observer = await self._start_watching()
        try:
            while True:
                await self._round()
                await self._wait()
        finally:
            if observer is not None:
                observer.stop()
                await asyncio.to_thread(observer.join, 5)

    async def _round(self) -> None:
        """Deliver what finished, take what settled; a failure (a full disk, the database away) is logged and
        the next round tries again, so the folder is never left unwatched."""
        try:
            await self.deliver_finished()
            await self.scan()
        except Exception:
            log.exception("inbox %s: this round failed; trying again in %g s", self.folder, self.spec.scan_secs)

    async def _start_watching(self) -> Any:
        """Make the folders and start watching; until that works (a share not reachable yet), try again."""
        while True:
            try:
                await asyncio.to_thread(self._make_folders)
                observer = self._start_observer(asyncio.get_running_loop())
            except OSError as error:
                log.warning("inbox %s: cannot set up the folders yet (%s); trying again in %g s", self.folder,
                            error, SETUP_RETRY_SECS)
                await asyncio.sleep(SETUP_RETRY_SECS)
                continue
            log.info("watching inbox %s for %s (%s), outbox %s", self.folder, self.owner.username, self.mode,
                     self.outbox)
            return observer

    def _make_folders(self) -> None:
        for folder in (self.folder, self.outbox, self.folder / "failed"):
            folder.mkdir(parents=True, exist_ok=True)
        if self.spec.after == "move":
            (self.folder / "done").mkdir(exist_ok=True)

    def _start_observer(self, loop: asyncio.AbstractEventLoop):
        """inotify through watchdog, unless told to poll or the folder is on a network file system."""
        polling = f"polling every {self.spec.scan_secs:g} s"
        if self.spec.watch == "poll":
            self.mode = polling
            return None
        if self.spec.watch == "auto" and (fs := filesystem_type(self.folder)) in NETWORK_FILESYSTEMS:
            self.mode = f"{polling} ({fs} is a network file system: no inotify events)"
            return None
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers.inotify import InotifyObserver

        inbox = self

        class Wake(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                loop.call_soon_threadsafe(inbox.poke)

        observer = InotifyObserver()
        observer.schedule(Wake(), str(self.folder), recursive=False)
        try:
            observer.start()
        except OSError as error:  # the scans alone still see every file, only a little later
            self.mode = f"{polling} (inotify unavailable: {error.strerror})"
            if self.spec.watch == "inotify":
                log.warning("inbox %s: inotify was asked for but is unavailable (%s); polling instead",
                            self.folder, error)
            return None
        self.mode = "inotify"
        return observer

    async def _wait(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.spec.scan_secs):
                await self._poke.wait()
        self._poke.clear()

    # -- taking files -------------------------------------------------------------------------------------

    async def scan(self) -> None:
        """Take every file that has settled; remember when the others were last seen changing."""
        listing = await asyncio.to_thread(self._listing)
        now = time.monotonic()
        for gone in set(self._sightings) - set(listing):
            del self._sightings[gone]
        for name, (size, mtime) in sorted(listing.items()):
            seen = self._sightings.get(name)
            if seen is None or (seen.size, seen.mtime) != (size, mtime):
                self._sightings[name] = Sighting(size, mtime, now)
            elif now - seen.since >= self.spec.settle_secs:
                del self._sightings[name]
                try:
                    await self._take(name, size, mtime)
                except OSError as error:  # unreadable for now (permissions, a share gone): try it again later
                    log.warning("inbox %s: cannot take %s yet: %s", self.folder, name, error)

    def _listing(self) -> dict[str, tuple[int, float]]:
        files = {}
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False) and is_candidate(entry.name):
                    stat = entry.stat(follow_symlinks=False)
                    files[entry.name] = (stat.st_size, stat.st_mtime)
        return files

    async def _take(self, name: str, size: int, mtime: float) -> None:
        if await self._already_taken(name, size, mtime):
            return
        if size > (limit_mb := self.config.limits.max_upload_mb) * 1024 * 1024:
            await self._reject(name, f"it is larger than the {limit_mb} MB limit ([limits] max_upload_mb)")
            return
        path = self.folder / name
        try:
            stored = await asyncio.to_thread(copy_file, path, self.config.audio_path)
        except FileNotFoundError:
            return  # moved away again before we got to it
        job = await self._existing_job(stored.sha256)
        if job is not None:
            await asyncio.to_thread(stored.path.unlink, True)
            log.info("inbox %s: %s has the content of transcription %d; reusing it", self.folder, name, job.id)
        else:
            job = await self._queue(name, stored)
            if job is None:
                return
        await InboxFile.acreate(inbox=str(self.folder), name=name, sha256=stored.sha256, size=size, mtime=mtime,
                                transcription=job.id, status=QUEUED)
        if job.current_state in FINAL:
            self.poke()

    async def _already_taken(self, name: str, size: int, mtime: float) -> bool:
        """The same file, unchanged, is in progress, or was delivered and stays in place (``after = "keep"``).

        A file that was delivered and moved away, or that failed, and now lies here again was put back on
        purpose: it is taken again (identical content then reuses the existing transcription).
        """
        settled = (InboxFile.status == QUEUED)
        if self.spec.after == "keep":
            settled |= (InboxFile.status == DONE)
        row = await InboxFile.aget_or_none(InboxFile.inbox == str(self.folder), InboxFile.name == name,
                                           InboxFile.size == size, InboxFile.mtime == mtime, settled)
        return row is not None

    async def _existing_job(self, sha256: str) -> Transcription | None:
        """A transcription of the same content for this user that did not fail."""
        return await Transcription.aget_or_none(
            Transcription.creator == self.owner.id, Transcription.audio_sha256 == sha256,
            Transcription.current_state.not_in(("processing_fail", "cancelled")))

    async def _queue(self, name: str, stored: StoredFile) -> Transcription | None:
        try:
            job = await queue_file(self.states, self.config, stored, creator_id=self.owner.id,
                                   quota=self.quota,
                                   source="inbox", options=self._options())
        except AudioError as error:
            await self._reject(name, str(error))
            return None
        self.wake_scheduler()
        log.info("inbox %s: queued %s as transcription %d", self.folder, name, job.id)
        return job

    def _options(self) -> dict[str, object]:
        chosen = {"language": self.spec.language, "initial_prompt": self.spec.initial_prompt,
                  "hotwords": self.spec.hotwords, "model": self.spec.model}
        return {key: value for key, value in chosen.items() if value}

    async def _reject(self, name: str, reason: str) -> None:
        """Not usable: set it aside with the reason, never drop it silently."""
        log.warning("inbox %s: %s is not taken: %s", self.folder, name, reason)
        await asyncio.to_thread(_set_aside, self.folder / name, self.folder / "failed", reason)

    # -- delivering results -------------------------------------------------------------------------------

    async def deliver_finished(self) -> None:
        """Every taken file whose transcription is final: outbox files and ``done/``, or ``failed/``.

        A file whose transcription was deleted before it finished goes to ``failed/`` too. A delivery that
        fails (an exporter's error, a full disk) is logged, leaves the file waiting and is tried again next
        round, without holding up the other files.
        """
        waiting = (InboxFile.inbox == str(self.folder)) & (InboxFile.status == QUEUED)
        finished = (InboxFile.select(InboxFile, Transcription).join(Transcription)
                    .where(waiting, Transcription.current_state.in_(FINAL)))
        orphaned = InboxFile.select().where(waiting, InboxFile.transcription.is_null())
        for row in await InboxFile._meta.database.list(finished):
            await self._settle(row, self._deliver(row, row.transcription))
        for row in await InboxFile._meta.database.list(orphaned):
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
        transcript = await load_transcript(job)
        stem = await self._output_stem(row.name)
        for name in self.spec.formats:
            exporter = self.exporters.get(name)
            body = await asyncio.to_thread(exporter.render, transcript, ExportOptions())
            await asyncio.to_thread(write_atomically, self.outbox / f"{stem}.{exporter.suffix}", body)
        if self.spec.after == "move":
            await asyncio.to_thread(_move_into, self.folder / row.name, self.folder / "done")
        row.status = DONE

    async def _output_stem(self, name: str) -> str:
        """The recording's name without its extension, or with it when another recording in this inbox
        shares the stem (``talk.mp3`` and ``talk.m4a``), so that neither's transcripts overwrite the other's."""
        stem = Path(name).stem
        prefix = f"{stem}."
        query = InboxFile.select(InboxFile.name).where(
            InboxFile.inbox == str(self.folder), InboxFile.name != name,
            peewee.fn.SUBSTR(InboxFile.name, 1, len(prefix)) == prefix)
        others = await InboxFile._meta.database.list(query)
        return name if any(Path(other.name).stem == stem for other in others) else stem

    async def _fail(self, row: InboxFile, reason: str) -> None:
        await asyncio.to_thread(_set_aside, self.folder / row.name, self.folder / "failed", reason)
        row.status, row.error = FAILED, reason


def write_atomically(path: Path, body: bytes) -> None:
    """Write to a hidden temporary file beside ``path``, then rename it: readers see all or nothing."""
    draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(draft, "wb") as stream:
        stream.write(body)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(draft, path)


def _move_into(source: Path, folder: Path) -> Path | None:
    """Move ``source`` into ``folder`` under a name not yet taken there; ``None`` if it is gone."""
    if not source.exists():
        return None
    folder.mkdir(exist_ok=True)
    target, number = folder / source.name, 1
    while target.exists():
        number += 1
        target = folder / f"{source.stem} ({number}){source.suffix}"
    os.replace(source, target)
    return target


def _set_aside(source: Path, folder: Path, reason: str) -> None:
    moved = _move_into(source, folder)
    if moved is not None:
        write_atomically(moved.with_name(moved.name + ".error.txt"), (reason + "\n").encode("utf-8"))
