"""``lazyd transcribe FILE``: the daemon without a server.

The same :class:`lazyd.daemon.Daemon` (planner, state machine, scheduler and worker process) runs against
a throwaway store in a temporary directory, with one worker and no inboxes; the file is read where it
lies, never copied or changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TextIO

from .config import Config
from .daemon import Daemon
from .exporters import Transcript
from .jobs.backend_setup import worker_setup
from .jobs.events import Event
from .jobs.transcripts import load_transcript
from .registry import load_registry
from .store import User

LOCAL_USER = "localcli"


@dataclasses.dataclass(frozen=True)
class LocalResult:
    transcript: Transcript
    error: str


async def transcribe_file(config: Config, path: Path, options: Any,
                          on_event: Callable[[Event], None] = lambda event: None) -> LocalResult:
    """Transcribe ``path`` (``options`` a :data:`lazyd.options.JobOverrides`) and return the transcript once
    the job is final."""
    async with local_daemon(config) as local:
        return await local.transcribe(path, options, on_event)


@dataclasses.dataclass(frozen=True)
class LocalDaemon:
    daemon: Daemon
    user_id: int

    async def transcribe(self, path: Path, options: Any,
                         on_event: Callable[[Event], None] = lambda event: None) -> LocalResult:
        job = await self.daemon.submit_file(path, creator_id=self.user_id, options=options)
        final = await self.daemon.wait(job.id, on_event)
        return LocalResult(await load_transcript(self.daemon.store, final), final.last_error)


@contextlib.asynccontextmanager
async def local_daemon(config: Config) -> AsyncIterator[LocalDaemon]:
    """The daemon on a throwaway store, for one file or several in turn: the worker stays loaded between
    them, as under ``lazyd serve`` (the benchmarks rely on that)."""
    registry = load_registry(modules=config.plugins.modules)
    worker_setup(config, registry)  # no backend here: say so now, not after a silent wait
    with tempfile.TemporaryDirectory(prefix="lazyd-") as scratch:
        async with Daemon(_scratch_config(config, Path(scratch)), registry) as daemon:
            user = await User.acreate(username=LOCAL_USER, password="!", password_timestamp=0.0)
            yield LocalDaemon(daemon, user.id)


def _scratch_config(config: Config, scratch: Path) -> Config:
    """The user's settings, on a store in ``scratch``, with one worker and no watched folders."""
    database = dataclasses.replace(config.database, url=f"sqlite:///{scratch / 'lazyd.sqlite3'}", pool_size=4)
    scheduler = dataclasses.replace(config.scheduler, enabled=True, workers=1)
    return dataclasses.replace(config, database=database, scheduler=scheduler, inbox=())


class ProgressBar:
    """A one-line progress bar on a terminal; silent when the stream is not one."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.enabled = stream.isatty()

    def __call__(self, event: Event) -> None:
        if not self.enabled or event.type != "progress":
            return
        done, total = event.data["done_secs"], event.data["total_secs"] or 1
        filled = int(self.width * min(done / total, 1))
        eta = event.data.get("eta_secs")
        tail = f", {eta:.0f} s left" if eta is not None else ""
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done:.0f}/{total:.0f} s{tail}  ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * (self.width + 40) + "\r")
            self.stream.flush()

