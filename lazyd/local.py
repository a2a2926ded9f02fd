"""``lazyd transcribe FILE``: the daemon's pipeline without a server.

The same planner, state machine, scheduler and worker process run against a throwaway store in a
temporary directory; the file is read where it lies, never copied or changed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from .aio import stop_task
from .config import Config
from .exporters import Transcript
from .jobs.events import Event, EventHub
from .jobs.ingest import inspect
from .jobs.scheduler import Scheduler
from .jobs.setup import retry_policy, worker_setup
from .jobs.states import FINAL, JobStates, Quota
from .jobs.views import load_transcript
from .jobs.worker import WorkerSetup
from .registry import load_registry
from .store import Store, Transcription, User

LOCAL_USER = "localcli"


@dataclasses.dataclass(frozen=True)
class LocalResult:
    transcript: Transcript
    error: str


async def transcribe_file(config: Config, path: Path, options: dict[str, object],
                          on_event: Callable[[Event], None] = lambda event: None) -> LocalResult:
    """Transcribe ``path`` with one worker and return the transcript once the job is final."""
    registry = load_registry(modules=config.plugins.modules)
    setup, _ = worker_setup(config, registry)
    with tempfile.TemporaryDirectory(prefix="lazyd-") as scratch:
        store = await Store.open(f"sqlite:///{Path(scratch) / 'lazyd.sqlite3'}", pool_size=4)
        try:
            return await _run(config, store, setup, path, options, on_event)
        finally:
            await store.close()


async def _run(config: Config, store: Store, setup: WorkerSetup, path: Path, options: dict[str, object],
               on_event: Callable[[Event], None]) -> LocalResult:
    events = EventHub()
    states = JobStates(store, events, retry_policy(config))
    user = await User.acreate(username=LOCAL_USER, password="!", password_timestamp=0.0)
    checked = await asyncio.to_thread(inspect, path, config, False)
    job, _ = await states.enqueue(user.id, Quota(None, None), audio_len_secs=checked.info.duration,
                                  chunk_size_secs=config.transcription.chunk_secs,
                                  chunk_plan=[list(span) for span in checked.plan], source="cli",
                                  filename=path.name, audio_path=str(path), options=options)
    local = dataclasses.replace(config, scheduler=dataclasses.replace(config.scheduler, workers=1))
    scheduler = Scheduler(local, states, setup)
    with events.subscribe(user.id) as queue:
        running = asyncio.create_task(scheduler.run())
        try:
            await _until_final(queue, on_event)
        finally:
            await stop_task(running)
    final = await Transcription.aget_by_id(job.id)
    return LocalResult(await load_transcript(final), final.last_error)


async def _until_final(queue: asyncio.Queue[Event | None], on_event: Callable[[Event], None]) -> None:
    while (event := await queue.get()) is not None:
        on_event(event)
        if event.type == "state" and event.data["state"] in FINAL:
            return


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

