"""The daemon: one object that owns the running system and offers what every front end needs.

``Daemon(config, registry)`` is an async context manager. Entering it opens the store, builds the state
machine, starts the scheduler (when this node transcribes) and the watched folders; leaving it stops
them in the reverse order and closes the store. The HTTP API, ``lazyd transcribe`` and any later front end
change jobs only through its operations, and each operation does the whole change: the state transition,
then waking the scheduler, stopping a running chunk, telling the inboxes. Nothing here knows about HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from .aio import stop_task
from .config import Config
from .files import make_private, remove_files
from .host import Host, probe_host
from .inbox import Inbox, check_inbox
from .jobs.backend_setup import backend_choice, parallel_decodes, worker_setup
from .jobs.events import Event, EventHub, LiveEvents
from .jobs.ingest import StoredFile, display_name, inspect, queue_file, store_stream, upload_quota
from .jobs.scheduler import Scheduler
from .jobs.shared_events import SharedEventHub
from .jobs.states import ACTIVE, FINAL, JobStates, Quota, RetryPolicy, TransitionRefused, queue_counts
from .jobs.transcripts import one_transcription_json
from .metrics import Metrics
from .models.catalog import runnable_models
from .nodes import NODE_BEAT_SECS, NodeStatus, ThisNode, announce, known_nodes, unclaimable_models
from .options import JobOverrides, stored_options
from .registry import PluginError, Registry
from .store import DATABASE_ERRORS, Store, Transcription, User, sqlite_files, sqlite_path, utcnow

log = logging.getLogger(__name__)

class OwnsInbox(Exception):
    """The user owns an ``[[inbox]]``: deleting them would leave the folder without an owner."""

    def __init__(self, username: str, folder: str) -> None:
        super().__init__(f"User '{username}' owns the inbox {folder}: remove it from the configuration first")


WAIT_RECHECK_SECS = 5.0
"""How often :meth:`Daemon.wait` reads the job again: another daemon on the same database may finish it."""


@dataclass(frozen=True)
class BackendStatus:
    """Which backend this node transcribes with and why, or why it does not."""

    scheduler: bool
    """Whether this node transcribes at all (``[scheduler] enabled``)."""
    backend: str = ""
    device: str = ""
    reason: str = ""
    problem: str = ""


@dataclass(frozen=True)
class WorkerStatus:
    slot: int
    pid: int | None
    alive: bool
    model: str
    parallel: int
    """Chunks its model decodes at once."""
    loaded: bool
    """False while the model loads, and after it was unloaded for being idle (``unload_idle_secs``)."""


@dataclass(frozen=True)
class InboxStatus:
    path: str
    user: str
    outbox: str
    watching: str
    """How the folder is watched; "" when it is not, for the ``problem`` given."""
    problem: str = ""


@dataclass(frozen=True)
class DaemonStatus:
    database_ok: bool
    database_url: str
    host: Host
    backend: BackendStatus
    node: str = ""
    """This run's lease prefix when it transcribes, else ""."""
    workers: tuple[WorkerStatus, ...] = ()
    queue: dict[str, int] = field(default_factory=dict)
    """How many jobs are in each state (empty when the database does not answer)."""
    inboxes: tuple[InboxStatus, ...] = ()
    nodes: tuple[NodeStatus, ...] = ()
    """The daemons on this database (this one too) and what each can run."""
    unclaimable_models: tuple[str, ...] = ()
    """Models queued jobs name that no live daemon has."""


class Daemon:
    """The store, the event hub, the state machine, the scheduler and the inboxes of one running lazyd."""

    def __init__(self, config: Config, registry: Registry) -> None:
        """Checks what can be checked without the store: a broken ``[[inbox]]`` stops start-up here."""
        for spec in config.inbox:
            check_inbox(spec, registry.exporters)
        self.config = config
        self.registry = registry
        self.events: LiveEvents = (EventHub() if sqlite_path(config.database_url) is not None
                                   else SharedEventHub(config.database_url))
        """Live events: in memory on SQLite; on PostgreSQL shared with every daemon on the database."""
        self.upload_quota = upload_quota(config)
        self.host = probe_host()
        self.started_at = int(time.time())
        """When this daemon started, in Unix seconds."""
        self.metrics = Metrics(config.scheduler.node())
        """What ``GET /metrics`` exposes (:mod:`lazyd.metrics`)."""
        self.backend = BackendStatus(scheduler=config.scheduler.enabled)
        self.scheduler: Scheduler | None = None
        self.parallel = parallel_decodes(config, config.transcription.device)
        """Chunks decoded at once, which recordings are planned for: this daemon's workers' once they are
        chosen, else what the configuration gives on the CPU."""
        self.inboxes: list[Inbox] = []
        self.idle_inboxes: list[InboxStatus] = []
        """The ``[[inbox]]`` entries that do not run, each with its reason."""
        self._store: Store | None = None
        self._served_model: str | None = None
        self._states: JobStates | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the daemon is not running: use it as 'async with Daemon(...)'")
        return self._store

    @property
    def states(self) -> JobStates:
        if self._states is None:
            raise RuntimeError("the daemon is not running: use it as 'async with Daemon(...)'")
        return self._states

    # -- starting and stopping ----------------------------------------------------------------------------

    async def __aenter__(self) -> Daemon:
        await self._keep_files_private()
        database = self.config.database
        self._store = await Store.open(self.config.database_url, pool_size=database.pool_size,
                                       timeout_s=database.connect_timeout_s)
        try:
            await self.events.start()
            self._states = JobStates(self._store, self.events, _retry_policy(self.config),
                                     on_finished=self._finished)
            self.inboxes = await self._make_inboxes()
            if self.config.scheduler.enabled:
                await self._start_scheduler()
            for inbox in self.inboxes:
                self._start(inbox.run(), f"inbox {inbox.folder}")
            self._start(self._announce_node(), "node announcements")
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stop()

    async def _stop(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.drain(self.config.scheduler.shutdown_grace_secs)
        for task in reversed(self._tasks):
            await stop_task(task)
        self._tasks.clear()
        await self.events.close()
        if self._store is not None:
            await self._store.close()

    async def _keep_files_private(self) -> None:
        """The database, recordings and secrets are the daemon's alone; an older install's are made so."""
        config = self.config
        files = [config.data_path]
        if (database := sqlite_path(config.database_url)) is not None:
            files += sqlite_files(database)
        changed = await asyncio.to_thread(make_private, files, [config.audio_path, config.data_path / "secrets"])
        if changed:
            log.warning("%d file(s) of lazyd's could be read by other users; they are private now (%s%s)",
                        len(changed), ", ".join(map(str, changed[:3])), ", ..." if len(changed) > 3 else "")

    async def _make_inboxes(self) -> list[Inbox]:
        """One watcher per ``[[inbox]]``. An entry whose owner does not exist is that inbox's problem alone:
        it is logged and shown in :meth:`status`, and the rest of the daemon runs."""
        inboxes = []
        for spec in self.config.inbox:
            owner = await User.aget_or_none(User.username == spec.user)
            if owner is None:
                problem = f"there is no user {spec.user!r} (create it with lazyd user add, then restart)"
                log.error("inbox %s is not watched: %s", spec.path, problem)
                self.idle_inboxes.append(InboxStatus(spec.path, spec.user, spec.outbox, "", problem))
            else:
                inboxes.append(Inbox(spec, owner, self))
        return inboxes

    async def _start_scheduler(self) -> None:
        try:
            setup, choice = worker_setup(self.config, self.registry)
        except PluginError as error:
            if self.config.transcription.backend != "auto":
                raise  # the operator named a backend: running without it would hide the mistake
            log.error("not transcribing: %s", error)
            self.backend = BackendStatus(scheduler=True, problem=str(error))
            return
        log.info("host %s: backend %s on %s (%s)", self.host.describe(), choice.backend.name, choice.device,
                 choice.reason)
        self.backend = BackendStatus(scheduler=True, backend=choice.backend.name, device=choice.device,
                                     reason=choice.reason)
        self.parallel = setup.model.parallel
        models = await asyncio.to_thread(runnable_models, setup.backend, setup.model.model,
                                         Path(setup.model.models_dir))  # reads the models' files
        self.scheduler = Scheduler(self.config, self.states, setup, self.metrics, models)
        self._start(self.scheduler.run(), "scheduler")

    async def _announce_node(self) -> None:
        """Say every :data:`~lazyd.nodes.NODE_BEAT_SECS` what this daemon runs, and warn (once each) of
        queued jobs naming a model no live daemon has."""
        started_at, warned = utcnow(), set()
        while True:
            scheduler = self.scheduler
            models = scheduler.models if scheduler is not None else None
            node = ThisNode(self.config.scheduler.node(), self.config.server.listen, scheduler is not None,
                            self.backend.backend, frozenset(models or ()))
            try:
                await announce(self.store, node, started_at)
                if scheduler is not None:
                    for model in set(await unclaimable_models(self.store, await known_nodes(self.store))) - warned:
                        log.warning("queued jobs ask for the model %r, which no running daemon has: they wait for "
                                    "one that has it ('lazyd models pull %s')", model, model)
                        warned.add(model)
            except DATABASE_ERRORS as error:
                log.warning("cannot announce this daemon: %s", error)
            await self.store.release_connection()  # a task keeps its pooled connection until it gives it back
            await asyncio.sleep(NODE_BEAT_SECS)

    def _start(self, work: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(work)
        task.set_name(name)
        task.add_done_callback(_report_end)
        self._tasks.append(task)

    def _finished(self, job: dict[str, Any]) -> None:
        """A transcription reached a final state: tell the plugins, and the inboxes it may belong to."""
        self.registry.hook.lazyd_transcription_finished(transcription=job)
        for inbox in self.inboxes:
            inbox.poke()

    def _wake_scheduler(self) -> None:
        if self.scheduler is not None:
            self.scheduler.wake()

    # -- submitting ---------------------------------------------------------------------------------------

    async def check_active(self, creator_id: int, quota: Quota | None = None) -> None:
        """Raise :class:`lazyd.jobs.states.ActiveJobLimit` when the user may not submit now (before an upload
        is received, so that a refused one costs no transfer)."""
        await self.states.check_active(creator_id, quota or self.upload_quota)

    async def receive(self, read: Callable[[], Awaitable[bytes]], filename: str, max_bytes: int) -> StoredFile:
        """Stream a recording into the data directory (``read`` yields pieces, then ``b""``), for :meth:`submit`."""
        return await store_stream(read, self.config.audio_path, filename, max_bytes)

    async def submit(self, audio: StoredFile, *, creator_id: int, options: Any = None, source: str = "upload",
                     quota: Quota | None = None) -> Transcription:
        """Queue a received recording (``options`` a :data:`lazyd.options.JobOverrides`); a refused one
        (not audio, too long, over the quota) is removed and the error raised."""
        job = await queue_file(self.states, self.config, audio, creator_id=creator_id,
                               quota=quota or self.upload_quota, source=source,
                               options=stored_options(options or JobOverrides()), parallel=self.parallel)
        self._wake_scheduler()
        return job

    async def submit_file(self, path: Path, *, creator_id: int, options: Any = None,
                          source: str = "cli") -> Transcription:
        """Queue a file where it lies, without copying it and without the upload limits (``lazyd transcribe``)."""
        checked = await asyncio.to_thread(inspect, path, self.config, self.parallel, False)
        job, _ = await self.states.enqueue(
            creator_id, Quota(None, None), audio_len_secs=checked.info.duration,
            chunk_size_secs=self.config.transcription.chunk_secs,
            chunk_plan=[list(span) for span in checked.plan], source=source, filename=display_name(path.name),
            audio_path=str(path), options=stored_options(options or JobOverrides()))
        self._wake_scheduler()
        return job

    # -- changing -----------------------------------------------------------------------------------------

    async def cancel(self, job_id: int) -> Transcription:
        """Stop an active job (its running chunk at once, if it runs here); :class:`TransitionRefused` if final."""
        job = await self.states.cancel(job_id)
        if self.scheduler is not None:
            self.scheduler.cancel(job_id)
        return job

    async def retry(self, job_id: int) -> Transcription:
        """Queue a failed, cancelled or partial job again; it resumes at its first unfinished chunk."""
        job = await self.states.retry(job_id)
        self._wake_scheduler()
        return job

    async def delete(self, job_id: int) -> None:
        """Remove a job with its chunks and audio, cancelling it first when it is active."""
        job = await Transcription.aget_or_none(Transcription.id == job_id)
        if job is None:
            raise TransitionRefused(f"Transcription {job_id} no longer exists")
        if job.current_state in ACTIVE:
            with contextlib.suppress(TransitionRefused):  # it finished meanwhile: deleting is still right
                await self.cancel(job_id)
        audio = await self.states.delete(job_id)
        await remove_files([audio] if audio else [])

    async def delete_user(self, user: User) -> None:
        """Remove a user with every transcription and audio file, each job through the state machine (so
        running ones stop and the owner's open streams see ``deleted``). :class:`OwnsInbox`, and nothing
        removed, when an ``[[inbox]]`` names the user."""
        for spec in self.config.inbox:
            if spec.user == user.username:
                raise OwnsInbox(user.username, spec.path)
        jobs = await self.store.list(Transcription.select(Transcription.id).where(Transcription.creator == user.id))
        for job in jobs:
            with contextlib.suppress(TransitionRefused):  # already gone
                await self.delete(job.id)
        async with self.store.write_transaction():
            await user.adelete_instance(recursive=True)

    # -- reading ------------------------------------------------------------------------------------------

    async def owned_job(self, user_id: int, job_id: int) -> Transcription | None:
        """The job if it exists and belongs to ``user_id``: another user's job is as absent as a missing one."""
        return await Transcription.aget_or_none(Transcription.id == job_id, Transcription.creator == user_id)

    async def wait(self, job_id: int, on_event: Callable[[Event], None] = lambda event: None) -> Transcription | None:
        """The job once it is final (``None`` once it is deleted), passing each of its events to ``on_event``."""
        job = await Transcription.aget_or_none(Transcription.id == job_id)
        if job is None:
            return None
        async with self.events.subscription(job.creator_id) as queue:
            job = await Transcription.aget_or_none(Transcription.id == job_id)  # nothing is missed since subscribing
            while job is not None and job.current_state not in FINAL:
                if await _next_event_of(queue, job_id, on_event) is not None:
                    job = await Transcription.aget_or_none(Transcription.id == job_id)
        return job

    async def served_model(self) -> str:
        """The model clients see this node serve (``/v1/models``): ``[transcription] model``, else the default
        of the backend chosen for this host (also on a node without a scheduler). Probed once, in a thread:
        asking a backend for its devices can load CUDA."""
        if self._served_model is None:
            self._served_model = self.config.transcription.model or await asyncio.to_thread(self._default_model)
        return self._served_model

    def _default_model(self) -> str:
        try:
            backend = backend_choice(self.config, self.registry).backend
        except PluginError:
            return "default"
        return backend.default_model or "default"

    async def summary(self, job: Transcription) -> dict[str, Any]:
        """The seed's transcription object of ``job``."""
        return await one_transcription_json(self.store, job)

    async def status(self) -> DaemonStatus:
        """What runs here: the database, the backend chosen and why, the workers, the queue, the inboxes."""
        healthy = await self.store.healthy()
        backend, node, workers = self.backend, "", ()
        if self.scheduler is not None:
            node, workers = self.scheduler.owner, tuple(WorkerStatus(**worker)
                                                        for worker in self.scheduler.worker_descriptions())
            if self.scheduler.worker_problem:
                backend = BackendStatus(**{**backend.__dict__, "problem": self.scheduler.worker_problem})
        inboxes = tuple(InboxStatus(str(inbox.folder), inbox.owner.username, str(inbox.outbox), inbox.mode)
                        for inbox in self.inboxes) + tuple(self.idle_inboxes)
        if not healthy:
            return DaemonStatus(healthy, self.store.describe(), self.host, backend, node, workers, {}, inboxes)
        nodes = await known_nodes(self.store)
        return DaemonStatus(healthy, self.store.describe(), self.host, backend, node, workers,
                            await queue_counts(self.store), inboxes, tuple(nodes),
                            tuple(await unclaimable_models(self.store, nodes)))


async def _next_event_of(queue: asyncio.Queue[Event | None], job_id: int,
                         on_event: Callable[[Event], None]) -> str | None:
    """The type of the next state change of ``job_id`` ("state" or "deleted"), or "recheck" when the stream
    was cut or stayed quiet for :data:`WAIT_RECHECK_SECS`; ``None`` for any other event."""
    try:
        async with asyncio.timeout(WAIT_RECHECK_SECS):
            event = await queue.get()
    except TimeoutError:
        return "recheck"
    if event is None:
        return "recheck"
    if event.data.get("transcription_id") != job_id:
        return None
    on_event(event)
    return event.type if event.type in ("state", "deleted") else None


def _retry_policy(config: Config) -> RetryPolicy:
    return RetryPolicy(config.scheduler.max_attempts, timedelta(seconds=config.scheduler.retry_backoff_secs))


def _report_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped", task.get_name(), exc_info=task.exception())
