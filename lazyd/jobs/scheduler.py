"""The scheduler: claims queued jobs, feeds their chunks to warm worker processes, keeps the lease alive.

Each of ``scheduler.workers`` slots owns one worker process and runs one job at a time. A job resumes at
its first unfinished chunk, so a requeued job never redoes finished work. The lease is renewed while the
job runs; losing it (a cancel, or another daemon taking over a job this one was too slow to renew) stops
the job here, and the chunk fence in :mod:`lazyd.jobs.states` keeps late results out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta

from ..aio import stop_tasks
from ..backend import DetectedLanguage, Segment, Word
from ..config import Config
from ..metrics import Metrics
from ..options import JobOptions, TranscribeOptions, load_options
from ..store import DATABASE_ERRORS, Transcription, TranscriptionChunk
from .cuts import Span, last_word
from .events import LiveEvents
from .states import ChunkResult, JobStates
from .worker import (ChunkDone, ChunkRequest, Timeouts, WorkerDied, WorkerError, WorkerProcess, WorkerSetup,
                     WorkerStartFailed)

log = logging.getLogger(__name__)

RESTART_BACKOFF_SECS = (1, 5, 30, 120)
SAVE_RETRY_SECS = 1.0
"""How often a decoded chunk is offered again to a database that did not answer."""


def job_options(config: Config, job: Transcription) -> JobOptions:
    """The configured defaults, overridden by what the job asked for."""
    return JobOptions.of(config.transcription).with_overrides(load_options(job.options))


@dataclass
class Run:
    """One attempt at one job: the worker doing it and the lease it holds (per slot, so two slots of one
    daemon can never both believe they own a job)."""

    job: Transcription
    worker: WorkerProcess
    owner: str
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class Decoding:
    """How a job's chunks are decoded: the worker's options, the seconds decoded past each cut, and whether
    the job keeps word timings (the worker may time words only to place the cuts)."""

    options: TranscribeOptions
    overlap: float
    with_words: bool


@dataclass
class Unit:
    """One chunk being decoded. What it hears is kept (:meth:`Span.own_part`) only once it is its turn,
    that is once the chunk before is committed and its last word known; from then on each segment is kept
    and published as it comes."""

    number: int
    span: Span
    with_words: bool
    publish: Callable[[Segment], None]
    heard: list[Segment] = field(default_factory=list)
    kept: list[Segment] = field(default_factory=list)
    timed: list[Segment] = field(default_factory=list)
    """What was kept, with word timings, whether or not the job keeps them: the next cut needs them."""
    its_turn: bool = False
    started_at: float = field(default_factory=time.monotonic)

    def hear(self, segment: Segment) -> None:
        """A segment from the worker, in chunk time."""
        self.heard.append(segment.shifted(self.span.decode_start))
        if self.its_turn:
            self._keep(self.heard[-1])

    def take_turn(self, after: Word | None) -> None:
        """The chunk before is committed, ending with ``after``: keep what was heard so far."""
        if not self.its_turn:
            self.span, self.its_turn = replace(self.span, after=after), True
            for segment in self.heard:
                self._keep(segment)

    def _keep(self, segment: Segment) -> None:
        if (own := self.span.own_part(segment)) is not None:
            self.timed.append(own)
            self.kept.append(own if self.with_words else replace(own, words=None))
            self.publish(self.kept[-1])

    def result(self, language: DetectedLanguage | None) -> ChunkResult:
        text = " ".join(segment.text.strip() for segment in self.kept if segment.text.strip())
        return ChunkResult(self.number, self.span.start, self.span.end, text,
                           [segment.to_json() for segment in self.kept], language)


@dataclass
class Progress:
    """Audio seconds done in this run, to estimate the time left."""

    total_secs: float
    started_at: float
    resumed_at_secs: float

    def eta(self, done_secs: float) -> float | None:
        speed = (done_secs - self.resumed_at_secs) / max(time.monotonic() - self.started_at, 1e-6)
        return None if speed <= 0 else (self.total_secs - done_secs) / speed


class Scheduler:
    def __init__(self, config: Config, states: JobStates, setup: WorkerSetup, metrics: Metrics,
                 models: frozenset[str] | None = None) -> None:
        """``models``: the names it may claim jobs for (``None``: any job, whatever model it names)."""
        self.config = config
        self.states = states
        self.events: LiveEvents = states.events
        self.setup = setup
        self.metrics = metrics
        node = config.scheduler.node()
        self.node_prefix = f"{node}/"
        self.owner = f"{node}/{secrets.token_hex(4)}/"
        """This run of the daemon; each slot holds its leases as ``<owner><slot>``."""
        self.lease = timedelta(seconds=config.scheduler.lease_secs)
        self.timeouts = Timeouts(stall=config.scheduler.stall_timeout_secs,
                                 cancel_grace=config.scheduler.cancel_grace_secs)
        self.worker_problem = ""
        self.models = models
        self._wake = asyncio.Event()
        self._draining = asyncio.Event()
        self._slots: list[asyncio.Task[None]] = []
        self._cancels: dict[int, asyncio.Event] = {}
        self._workers: dict[int, WorkerProcess] = {}
        self._unload_after = config.scheduler.unload_idle_secs

    def worker_descriptions(self) -> list[dict[str, object]]:
        """Every slot's worker; a slot whose model was unloaded after being idle shows ``loaded`` false."""
        return [_described(slot, self._workers.get(slot)) for slot in range(self.config.scheduler.workers)]

    def wake(self) -> None:
        """A job was queued: look now instead of at the next poll."""
        self._wake.set()

    def cancel(self, job_id: int) -> None:
        """Stop the job's running chunk now, if this daemon runs it (others notice at their heartbeat)."""
        if event := self._cancels.get(job_id):
            event.set()

    async def run(self) -> None:
        requeued = await self.states.requeue_abandoned(self.node_prefix, self.owner)
        if requeued:
            log.info("requeued %d job(s) left running by an earlier run of this daemon: %s", len(requeued),
                     ", ".join(map(str, requeued)))
        slots = self._slots = [asyncio.create_task(self._slot(slot), name=f"slot {slot}")
                               for slot in range(self.config.scheduler.workers)]
        try:
            await asyncio.gather(*slots)
        finally:
            await stop_tasks(slots)

    async def drain(self, grace_secs: float) -> None:
        """Shutdown: claim nothing more and start no new chunk; wait up to ``grace_secs`` for the chunks
        being decoded to be kept (their jobs go back to the queue, to resume at the next chunk). What is
        still decoding after that is stopped by the cancel that follows, and done again after a restart."""
        self._draining.set()
        self._wake.set()
        running = [slot for slot in self._slots if not slot.done()]
        if running:
            log.info("stopping: waiting up to %g s for the chunks being decoded", grace_secs)
            await asyncio.wait(running, timeout=grace_secs)

    async def _slot(self, slot: int) -> None:
        """Run one job after another on this slot's worker; the worker is started at once and kept loaded
        between jobs, until it has been idle for ``unload_idle_secs`` (then the next job starts it again)."""
        worker: WorkerProcess | None = None
        unloaded = False
        idle_since = time.monotonic()
        try:
            while not self._draining.is_set():
                if not unloaded:
                    worker = self._workers[slot] = await self._warm_worker(worker)
                job = await self._claim(f"{self.owner}{slot}")
                if job is None:
                    if not unloaded and self._idle_too_long(idle_since):
                        log.info("worker %s idle for %.0f s: unloading its model", worker.pid, self._unload_after)
                        await worker.close()  # /health says "unloaded" once the process is gone
                        self._workers.pop(slot, None)
                        worker, unloaded = None, True
                    await self._idle()
                    continue
                needed = self._setup_for(job)
                if worker is None or worker.setup != needed:
                    if worker is not None:
                        await worker.close()
                    worker = self._workers[slot] = await self._warm_worker(None, needed)
                unloaded = False
                await self._run_job(Run(job, worker, job.lease_owner))
                idle_since = time.monotonic()
        finally:
            self._workers.pop(slot, None)
            if worker is not None:
                await asyncio.shield(worker.close())

    def _idle_too_long(self, since: float) -> bool:
        return 0 < self._unload_after <= time.monotonic() - since

    def _setup_for(self, job: Transcription) -> WorkerSetup:
        """The daemon's model, or the one the job asks for (an inbox can name its own)."""
        model = load_options(job.options).model
        return replace(self.setup, model=replace(self.setup.model, model=model)) if model else self.setup

    async def _warm_worker(self, worker: WorkerProcess | None, setup: WorkerSetup | None = None) -> WorkerProcess:
        """The slot's worker, started (again) when it is missing or dead; waits out a failing model."""
        attempt = 0
        while worker is None or not worker.alive:
            worker = WorkerProcess(setup or self.setup, self.timeouts)
            started = time.monotonic()
            try:
                await worker.start()
                self.worker_problem = ""
                self.metrics.model_loaded(worker.setup.backend, worker.setup.model.model, time.monotonic() - started)
            except WorkerStartFailed as error:
                self.worker_problem = str(error)
                self.metrics.worker_restarts.labels(cause="failed_to_load").inc()
                delay = RESTART_BACKOFF_SECS[min(attempt, len(RESTART_BACKOFF_SECS) - 1)]
                log.error("%s; trying again in %d s", error, delay)
                await worker.kill()
                worker, attempt = None, attempt + 1
                await asyncio.sleep(delay)
        return worker

    async def _claim(self, owner: str) -> Transcription | None:
        """The next runnable job; ``None`` also when the database failed (logged; tried again at the next poll)."""
        try:
            return await self.states.claim(owner, self.lease, self.models)
        except Exception:
            log.exception("cannot claim a job; trying again shortly")
            return None

    async def _idle(self) -> None:
        """Until the next poll or a wake-up. ``asyncio.wait`` rather than a timeout around the wait: on Python
        3.11 a cancel that arrives as the timeout fires is taken for the timeout and lost."""
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({woken}, timeout=self.config.scheduler.poll_secs)
        finally:
            woken.cancel()
        self._wake.clear()

    async def _run_job(self, run: Run) -> None:
        self._cancels[run.job.id] = run.cancelled
        heartbeat = asyncio.create_task(self._heartbeat(run))
        try:
            await self._attempt(run)
            if self._draining.is_set():
                await self.states.release(run.job.id, run.owner)
        except asyncio.CancelledError:
            await asyncio.shield(self._give_back(run))
            raise
        except Exception:  # the database failed, say: the job is run again when its lease has expired
            log.exception("transcription %d: stopped by an unexpected error; it resumes when its lease expires",
                          run.job.id)
            await run.worker.kill()
            self.metrics.worker_restarts.labels(cause="unexpected_error").inc()
        finally:
            heartbeat.cancel()
            self._cancels.pop(run.job.id, None)

    async def _attempt(self, run: Run) -> None:
        """One attempt at the job's unfinished chunks; a failure in the worker counts as a failed attempt."""
        job, worker = run.job, run.worker
        log.info("transcription %d: started (attempt %d)", job.id, job.error_count + 1)
        try:
            if await self._run_chunks(run):
                await self.states.complete(job.id, run.owner, worker.description)
                log.info("transcription %d: completed", job.id)
        except (WorkerError, OSError) as error:
            log.warning("transcription %d: attempt failed: %s", job.id, error)
            if isinstance(error, WorkerDied):
                await worker.kill()
                self.metrics.worker_restarts.labels(cause="died_or_hung").inc()
            await self.states.record_error(job.id, run.owner, str(error))

    async def _give_back(self, run: Run) -> None:
        """Daemon shutdown: stop the chunk and return the job to the queue for the next start."""
        await run.worker.kill()
        await self.states.release(run.job.id, run.owner)

    async def _run_chunks(self, run: Run) -> bool:
        """Every unfinished chunk, up to the worker's capacity at once, each committed in order once those
        before it are; ``False`` when the job was cancelled or its lease lost.

        Each chunk is decoded a little past its cuts and keeps the words that are its own (:mod:`.cuts`),
        which depends on the last word of the chunk before: a chunk decoded ahead of its turn waits with
        what it heard until the chunk before is committed (read back from the database when the job resumes
        there). The chunk before's text is not given as a prompt: measured in issue 9, that made tiny.en
        skip whole windows (WER 3.8% to 23% on the joined corpus cut every 60 s).
        """
        job, cancelled = run.job, run.cancelled
        done = await self._finished_chunks(job.id)
        pending = [(number, span) for number, span in enumerate(job.chunk_plan) if number not in done]
        if not pending:
            return not cancelled.is_set()
        decoding = self._decoding(job)
        progress = Progress(job.audio_len_secs, time.monotonic(), pending[0][1][0])
        after = last_word(await self._chunk_segments(job.id, pending[0][0] - 1)) if pending[0][0] > 0 else None
        waiting = deque(pending)
        in_flight: deque[tuple[Unit, asyncio.Task[ChunkDone | None]]] = deque()
        try:
            while True:
                while (len(in_flight) < run.worker.capacity and waiting and not cancelled.is_set()
                       and not self._draining.is_set()):
                    in_flight.append(self._start_unit(run, waiting.popleft(), decoding, progress))
                if not in_flight:
                    return not cancelled.is_set() and not waiting
                unit, decoded = in_flight[0]
                unit.take_turn(after)
                if await decoded is None:
                    return False
                if not await self._save(run, unit.result(decoded.result().language)):
                    return False
                self._chunk_done(run, unit)
                in_flight.popleft()
                after = last_word(unit.timed)
        finally:  # after a failure, stop the chunks still decoding (a cancel stops each within its grace)
            if not cancelled.is_set():
                for _, task in in_flight:
                    task.cancel()
            await asyncio.gather(*(task for _, task in in_flight), return_exceptions=True)

    async def _save(self, run: Run, result: ChunkResult) -> bool:
        """Commit a decoded chunk; ``False`` when the lease is no longer ours. While the database does not
        answer (a restart, a network blip) the chunk is kept and saved again, for as long as the lease may
        still be ours: after that another daemon may have taken the job over and decodes the chunk itself."""
        give_up_at = time.monotonic() + self.lease.total_seconds()
        while True:
            try:
                return await self.states.save_chunk(run.job.id, run.owner, result)
            except DATABASE_ERRORS as error:
                if time.monotonic() >= give_up_at or run.cancelled.is_set():
                    raise
                log.warning("transcription %d: cannot save chunk %d yet (%s); keeping it and trying again",
                            run.job.id, result.chunk_no, error)
                await asyncio.sleep(SAVE_RETRY_SECS)

    def _chunk_done(self, run: Run, unit: Unit) -> None:
        audio_secs, decode_secs = unit.span.end - unit.span.start, time.monotonic() - unit.started_at
        log.info("transcription %d: chunk %d done, %.1f s of audio in %.1f s (%.1fx realtime)", run.job.id, unit.number,
                 audio_secs, decode_secs, audio_secs / max(decode_secs, 1e-6))
        self.metrics.chunk_done(run.worker.setup.backend, run.worker.setup.model.model, audio_secs, decode_secs)

    def _decoding(self, job: Transcription) -> Decoding:
        options = job_options(self.config, job).decoding()
        overlap = self.config.transcription.cut_overlap_secs if options.batch_size == 0 else 0.0
        # Batched decoding's word times are too rough to tell the words at a cut apart (measured in issue 9
        # with bench/transcribe.py: 18.3% WER with the overlap, 6.9% without), so its chunks end at their cuts.
        kept_words = options.word_timestamps
        if overlap > 0:  # the words at a cut are told apart by their times, so the worker must give them
            options = replace(options, word_timestamps=True)
        return Decoding(options, overlap, kept_words)

    def _start_unit(self, run: Run, chunk: tuple[int, tuple[float, float]], decoding: Decoding,
                    progress: Progress) -> tuple[Unit, asyncio.Task[ChunkDone | None]]:
        job = run.job
        number, (start, end) = chunk
        span = Span.around(start, end, job.audio_len_secs, decoding.overlap)
        unit = Unit(number, span, decoding.with_words,
                    lambda segment: self._publish_segment(job, number, segment, progress))
        request = ChunkRequest(job.audio_path, span.decode_start, span.decode_end, decoding.options)
        return unit, asyncio.create_task(run.worker.transcribe(request, unit.hear, run.cancelled))

    def _publish_segment(self, job: Transcription, chunk_no: int, segment: Segment, progress: Progress) -> None:
        self.events.publish(job.creator_id, "segment", transcription_id=job.id, chunk_order=chunk_no,
                            **segment.to_json())
        done = min(segment.end, job.audio_len_secs)
        self.events.publish(job.creator_id, "progress", transcription_id=job.id, done_secs=round(done, 2),
                            total_secs=job.audio_len_secs, eta_secs=_rounded(progress.eta(done)))

    async def _finished_chunks(self, job_id: int) -> set[int]:
        query = TranscriptionChunk.select(TranscriptionChunk.chunk_no).where(
            TranscriptionChunk.transcription == job_id)
        return {row.chunk_no for row in await self.states.store.list(query)}

    async def _chunk_segments(self, job_id: int, chunk_no: int) -> list[Segment]:
        """A finished chunk's segments; ``[]`` when it is not finished (or has none). Decoded in a thread,
        as :mod:`.transcripts` does: a long chunk holds thousands of timed words."""
        chunk = TranscriptionChunk
        rows = await self.states.store.list(chunk.select(chunk.segments.cast("TEXT").alias("raw_segments"))
                                            .where(chunk.transcription == job_id, chunk.chunk_no == chunk_no)
                                            .tuples())
        return await asyncio.to_thread(
            lambda: [Segment.from_json(data) for (raw,) in rows for data in json.loads(raw or "[]")])

    async def _heartbeat(self, run: Run) -> None:
        """Renew the lease; when it is lost (cancelled through any daemon, or taken over), stop the job."""
        interval = max(self.lease.total_seconds() / 6, 0.2)
        while not run.cancelled.is_set():
            await asyncio.sleep(interval)
            if not await self._renewed(run):
                log.info("transcription %d: lease lost (cancelled or taken over); stopping", run.job.id)
                run.cancelled.set()

    async def _renewed(self, run: Run) -> bool:
        """Whether the lease is still ours; a renewal the database failed is tried again at the next beat."""
        try:
            return await self.states.renew(run.job.id, run.owner, self.lease)
        except Exception:
            log.warning("transcription %d: cannot renew the lease; trying again", run.job.id, exc_info=True)
            return True


def _described(slot: int, worker: WorkerProcess | None) -> dict[str, object]:
    if worker is None:
        return {"slot": slot, "pid": None, "alive": False, "model": "", "parallel": 0, "loaded": False}
    return {"slot": slot, "pid": worker.pid, "alive": worker.alive, "model": worker.description,
            "parallel": worker.capacity, "loaded": worker.alive and bool(worker.description)}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
