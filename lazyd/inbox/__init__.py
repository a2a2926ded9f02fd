"""Watched folders: a recording dropped into an inbox comes back as transcripts in its outbox.

Every taken file has a row in ``inbox_files``, so a restart finishes what was in flight, delivers what
finished while the daemon was down, and never takes a file twice. The parts:

- :mod:`.watching`: noticing files (inotify, or scans alone on network shares);
- :mod:`.intake`: taking a settled file, copying it into the data directory and queueing it;
- :mod:`.delivery`: writing the transcripts into the outbox and moving the recording on.

:class:`Inbox` runs them: each round delivers what finished, then takes what settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import InboxConfig
from ..exporters import ExporterSet
from ..store import User
from .delivery import Delivery
from .intake import Intake
from .watching import start_observer

if TYPE_CHECKING:
    from ..daemon import Daemon

log = logging.getLogger(__name__)

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


def _sharing_outbox(spec: InboxConfig, daemon: Daemon) -> list[str]:
    """The folders of every inbox whose transcripts go into the same outbox as ``spec``'s."""
    outbox = os.path.abspath(spec.outbox)
    return [str(other.folder) for other in daemon.config.inbox if os.path.abspath(other.outbox) == outbox]


class Inbox:
    """One watched folder of ``owner``'s, whose jobs go through ``daemon``."""

    def __init__(self, spec: InboxConfig, owner: User, daemon: Daemon) -> None:
        self.spec = spec
        self.folder = spec.folder
        self.owner = owner
        self.intake = Intake(spec, owner, daemon, self.poke)
        self.delivery = Delivery(spec, daemon.store, daemon.registry.exporters, _sharing_outbox(spec, daemon))
        self.outbox = self.delivery.outbox
        self.mode = ""
        """How the folder is watched, in words (for ``/health``); "" until it is."""
        self._poke = asyncio.Event()

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
            await self.delivery.deliver_finished()
            await self.intake.scan()
        except Exception:
            log.exception("inbox %s: this round failed; trying again in %g s", self.folder, self.spec.scan_secs)

    async def _start_watching(self) -> Any:
        """Make the folders and start watching; until that works (a share not reachable yet), try again."""
        while True:
            try:
                await asyncio.to_thread(self._make_folders)
                observer, self.mode = start_observer(self.spec, asyncio.get_running_loop(), self.poke)
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

    async def _wait(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.spec.scan_secs):
                await self._poke.wait()
        self._poke.clear()
