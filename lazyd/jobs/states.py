"""The transcription state machine: the only code that writes ``current_state``.

    queued ──claim──> in_progress ──all chunks──> completed
      ^                  │  │  └──error──> processing_error ──claim──> in_progress
      │                  │  └─lease lost / shutdown──> queued
      └──────retry───────┴─cancel──> cancelled | completed_partially      (3rd error: processing_fail or
                                                                          completed_partially)

Every change is one conditional write in a transaction, so two daemons sharing a database, an external
worker and the API can race without corrupting a job: whoever loses the race sees ``None`` or an error.
Chunk writes are fenced by the lease, so a daemon that lost its job can never write into it. Each
committed change is published as an event to the owner, and a final state fires the plugin hook.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import peewee

from ..backend import DetectedLanguage
from ..models.catalog import model_name
from ..store import InboxFile, SegmentText, Store, Transcription, TranscriptionChunk, User, segment_rows, utcnow
from .events import EventHub
from .transcripts import one_transcription_json

log = logging.getLogger(__name__)

QUEUED = "queued"
IN_PROGRESS = "in_progress"
PROCESSING_ERROR = "processing_error"
COMPLETED = "completed"
COMPLETED_PARTIALLY = "completed_partially"
PROCESSING_FAIL = "processing_fail"
CANCELLED = "cancelled"

STATES = (QUEUED, IN_PROGRESS, PROCESSING_ERROR, COMPLETED, COMPLETED_PARTIALLY, PROCESSING_FAIL, CANCELLED)
ACTIVE = (QUEUED, IN_PROGRESS, PROCESSING_ERROR)
FINAL = (COMPLETED, COMPLETED_PARTIALLY, PROCESSING_FAIL, CANCELLED)
RETRYABLE = (COMPLETED_PARTIALLY, PROCESSING_FAIL, CANCELLED)


class TransitionRefused(Exception):
    """The job is not in a state that allows this change; the message says which state it is in."""


class ActiveJobLimit(TransitionRefused):
    """The user already has as many active jobs as allowed."""

    def __init__(self, job: Transcription) -> None:
        super().__init__(f"Transcription {job.id} is {job.current_state}. Please cancel the job or wait before "
                         "its completion to start a new one.")
        self.job = job


@dataclass(frozen=True)
class Quota:
    active_jobs: int | None = 1
    """Most queued or running jobs per user; ``None`` for no limit (the inbox waits its turn instead)."""
    transcriptions: int | None = 100
    """Most transcriptions kept per user; the oldest go (with their audio) to make room. ``None`` keeps all."""
    counted_inboxes: frozenset[str] = frozenset()
    """Inbox folders whose transcriptions count toward ``transcriptions`` and may be removed; other inboxes'
    transcriptions never are (``[[inbox]] quota_applies``)."""


@dataclass(frozen=True)
class ChunkResult:
    chunk_no: int
    start_secs: float
    end_secs: float
    text: str
    segments: list[dict[str, Any]]
    language: DetectedLanguage | None = None


FinishedHook = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    """The attempt that fails this many times in total ends the job."""
    backoff: timedelta = timedelta(seconds=10)
    """Wait before the first retry; doubled for each further one."""


class JobStates:
    """Every state change of every transcription goes through here."""

    def __init__(self, store: Store, events: EventHub, retry: RetryPolicy = RetryPolicy(),
                 on_finished: FinishedHook | None = None) -> None:
        self.store = store
        self.events = events
        self.retry_policy = retry
        self.on_finished = on_finished

    # -- creation --------------------------------------------------------------------------------------------

    async def enqueue(self, creator_id: int, quota: Quota, **fields: Any) -> tuple[Transcription, list[str]]:
        """Create a queued job under the user's quota; return it and the audio paths of removed old jobs."""
        requested_model = model_name(str((fields.get("options") or {}).get("model") or ""))
        async with self.store.write_transaction():
            await self._lock_user(creator_id)
            await self.check_active(creator_id, quota)
            removed = await self._make_room(creator_id, quota)
            job = await Transcription.acreate(creator=creator_id, current_state=QUEUED,
                                              requested_model=requested_model, **fields)
        await self._announce(job)
        return job, removed

    async def _lock_user(self, user_id: int) -> None:
        """Serialise job creation per user, so that two uploads at once cannot both pass the quota."""
        if self.store.is_postgres:
            await self.store.list(User.select(User.id).where(User.id == user_id).for_update())

    async def check_active(self, creator_id: int, quota: Quota) -> None:
        """Raise :class:`ActiveJobLimit` when the user may not upload another job now.

        The limit is about interactive uploads: jobs from the user's inbox wait in the queue and do not count.
        """
        if quota.active_jobs is None:
            return
        query = (Transcription.select()
                 .where(Transcription.creator == creator_id, Transcription.current_state.in_(ACTIVE),
                        Transcription.source == "upload")
                 .order_by(Transcription.id))
        active = await self.store.list(query)
        if len(active) >= quota.active_jobs:
            raise ActiveJobLimit(active[0])

    async def _make_room(self, creator_id: int, quota: Quota) -> list[str]:
        """Delete the user's oldest finished counted jobs beyond the quota less one; active jobs stay."""
        if quota.transcriptions is None:
            return []
        from_counted_inboxes = InboxFile.select(InboxFile.transcription).where(
            InboxFile.inbox.in_(sorted(quota.counted_inboxes)))
        counted = ((Transcription.creator == creator_id)
                   & ((Transcription.source != "inbox") | Transcription.id.in_(from_counted_inboxes)))
        excess = await self.store.count(Transcription.select().where(counted)) - max(quota.transcriptions - 1, 0)
        if excess <= 0:
            return []
        oldest = (Transcription.select(Transcription.id, Transcription.audio_path)
                  .where(counted, Transcription.current_state.in_(FINAL))
                  .order_by(Transcription.create_date, Transcription.id).limit(excess))
        surplus = await self.store.list(oldest)
        for job in surplus:
            await job.adelete_instance(recursive=True)
        return [job.audio_path for job in surplus if job.audio_path]

    async def delete(self, job_id: int) -> str:
        """Remove a job that is not running anywhere (cancel it first); return its audio path."""
        async with self.store.write_transaction():
            job = await self._locked_existing(job_id)
            if job.current_state == IN_PROGRESS:
                raise TransitionRefused(f"Transcription {job_id} is in_progress: cancel it before deleting it")
            await job.adelete_instance(recursive=True)
        self.events.publish(job.creator_id, "deleted", transcription_id=job_id)
        return job.audio_path

    # -- the scheduler's side -----------------------------------------------------------------------------

    async def claim(self, owner: str, lease: timedelta, models: frozenset[str] | None = None) -> Transcription | None:
        """Take the oldest runnable job in one statement: queued, due for a retry, or with a dead lease; with
        ``models``, only one that names none of its own or one of those."""
        now = utcnow()
        runnable = (
            (Transcription.current_state == QUEUED)
            | ((Transcription.current_state == PROCESSING_ERROR)
               & (Transcription.next_attempt_at.is_null() | (Transcription.next_attempt_at <= now)))
            | ((Transcription.current_state == IN_PROGRESS) & (Transcription.lease_expires_at < now))
        )
        if models is not None:
            runnable &= (Transcription.requested_model == "") | Transcription.requested_model.in_(sorted(models))
        # "id = (one id)", never "id IN (...)": PostgreSQL may run an IN subquery once per row, and each run of
        # a SKIP LOCKED query can pick another job, so one claim took two (seen once a model filter was added)
        candidate = Transcription.select(Transcription.id).where(runnable).order_by(Transcription.id).limit(1)
        if self.store.is_postgres:
            candidate = candidate.for_update("FOR UPDATE SKIP LOCKED")
        claim = (Transcription
                 .update(current_state=IN_PROGRESS, lease_owner=owner, node=owner.split("/", 1)[0],
                         lease_expires_at=now + lease, update_date=now)
                 .where(Transcription.id == candidate, runnable)
                 .returning(Transcription))
        rows = await self.store.run(lambda: list(claim.execute()))
        if not rows:
            return None
        await self._announce(rows[0])
        return rows[0]

    async def requeue_abandoned(self, node_prefix: str, run_prefix: str) -> list[int]:
        """Requeue jobs an earlier run of this node left ``in_progress`` (killed, power cut), at once.

        Leases are named ``<node>/<run>/<slot>``: those of this node but not of this run are abandoned.
        Other nodes' jobs are left alone: they come back through :meth:`claim` when their lease expires.
        """
        def starts(prefix: str) -> peewee.Expression:
            return peewee.fn.SUBSTR(Transcription.lease_owner, 1, len(prefix)) == prefix

        query = Transcription.select(Transcription.id).where(
            Transcription.current_state == IN_PROGRESS, starts(node_prefix), ~starts(run_prefix))
        requeued = []
        for row in await self.store.list(query):
            if await self._move(row.id, (IN_PROGRESS,), QUEUED) is not None:
                requeued.append(row.id)
        return requeued

    async def renew(self, job_id: int, owner: str, lease: timedelta) -> bool:
        """Extend the lease; ``False`` when it was lost (cancelled, or taken over by another daemon)."""
        now = utcnow()
        query = (Transcription.update(lease_expires_at=now + lease)
                 .where(Transcription.id == job_id, Transcription.current_state == IN_PROGRESS,
                        Transcription.lease_owner == owner))
        return await self.store.execute(query) == 1

    async def save_chunk(self, job_id: int, owner: str | None, chunk: ChunkResult) -> bool:
        """Upsert one chunk atomically; with an ``owner``, only while that owner still holds the lease.

        Idempotent: delivery is at-least-once, so the same chunk written twice leaves one row.
        """
        async with self.store.write_transaction():
            job = await self._locked(job_id)
            if job is None or not self._may_write_chunk(job, owner):
                return False
            await self._upsert_chunk(job, chunk)
            job.language, job.language_probability = await self._spoken_language(job.id)
            job.update_date = utcnow()
            await job.asave(only=[Transcription.update_date, Transcription.language,
                                  Transcription.language_probability])
        self.events.publish(job.creator_id, "chunk", transcription_id=job_id, chunk_order=chunk.chunk_no,
                            start=chunk.start_secs, end=chunk.end_secs, text=chunk.text)
        return True

    @staticmethod
    def _may_write_chunk(job: Transcription, owner: str | None) -> bool:
        if owner is None:
            return job.current_state in ACTIVE
        return job.current_state == IN_PROGRESS and job.lease_owner == owner

    async def _upsert_chunk(self, job: Transcription, chunk: ChunkResult) -> None:
        language = chunk.language
        values = {"text": chunk.text, "start_secs": chunk.start_secs, "end_secs": chunk.end_secs,
                  "segments": chunk.segments, "update_date": utcnow(),
                  "language": language.code if language else "",
                  "language_probability": language.probability if language else None}
        existing = await TranscriptionChunk.aget_or_none(TranscriptionChunk.transcription == job.id,
                                                         TranscriptionChunk.chunk_no == chunk.chunk_no)
        if existing is None:
            await TranscriptionChunk.acreate(transcription=job.id, chunk_no=chunk.chunk_no, **values)
        else:
            await self.store.execute(
                TranscriptionChunk.update(**values).where(TranscriptionChunk.id == existing.id))
        await self._index_segments(job, chunk)

    async def _index_segments(self, job: Transcription, chunk: ChunkResult) -> None:
        """The chunk's segments as search rows (:class:`lazyd.store.SegmentText`), replacing any earlier ones
        (a chunk is saved again only before its job completes; corrections come after)."""
        await self.store.execute(SegmentText.delete().where(SegmentText.transcription == job.id,
                                                            SegmentText.chunk_no == chunk.chunk_no))
        rows = [{"transcription": job.id, "chunk_no": chunk.chunk_no, "segment_no": number, "start_secs": start,
                 "end_secs": end, "text": text}
                for number, start, end, text in segment_rows(chunk.start_secs, chunk.end_secs, chunk.text,
                                                             chunk.segments)]
        if rows:
            await self.store.execute(SegmentText.insert_many(rows))

    async def _spoken_language(self, job_id: int) -> tuple[str, float | None]:
        """The language detected over most of the job's finished audio, with its probability averaged over
        those chunks by length; ``("", None)`` while no chunk has one (each chunk keeps its own)."""
        chunk = TranscriptionChunk
        rows = await self.store.list(chunk.select(chunk.language, chunk.language_probability, chunk.start_secs,
                                                  chunk.end_secs)
                                     .where(chunk.transcription == job_id, chunk.language != "").tuples())
        seconds: dict[str, float] = {}
        weighted: dict[str, float] = {}
        for code, probability, start, end in rows:
            length = max(end - start, 1e-3)
            seconds[code] = seconds.get(code, 0.0) + length
            weighted[code] = weighted.get(code, 0.0) + length * (probability or 0.0)
        if not seconds:
            return "", None
        code = max(seconds, key=seconds.__getitem__)
        return code, round(weighted[code] / seconds[code], 3)

    async def complete(self, job_id: int, owner: str, model: str = "") -> Transcription | None:
        """All chunks are done; ``model`` records what transcribed them (for exports)."""
        return await self._move(job_id, (IN_PROGRESS,), COMPLETED, owner=owner, model_name=model)

    async def release(self, job_id: int, owner: str) -> Transcription | None:
        """Give a running job back to the queue (daemon shutdown), keeping its error count."""
        return await self._move(job_id, (IN_PROGRESS,), QUEUED, owner=owner)

    async def record_error(self, job_id: int, owner: str | None, message: str) -> Transcription | None:
        """Count a failed attempt: retry later with backoff, or give up at the policy's last attempt."""
        async with self.store.write_transaction():
            job = await self._locked(job_id)
            if job is None or job.current_state not in ACTIVE or (owner and job.lease_owner != owner):
                return None
            job.error_count += 1
            job.last_error = message[:4000]
            if job.error_count < self.retry_policy.max_attempts:
                target = PROCESSING_ERROR
                job.next_attempt_at = utcnow() + self.retry_policy.backoff * (2 ** (job.error_count - 1))
            else:
                target = await self._final_for_stop(job, PROCESSING_FAIL)
            self._set_state(job, target)
            await job.asave()
        await self._announce(job)
        return job

    # -- the API's side -----------------------------------------------------------------------------------

    async def cancel(self, job_id: int) -> Transcription:
        """Stop an active job: ``completed_partially`` when some chunk is done, else ``cancelled``."""
        async with self.store.write_transaction():
            job = await self._locked_existing(job_id)
            if job.current_state in FINAL:
                raise TransitionRefused(f"Transcription {job_id} is {job.current_state}: a finished job "
                                        "cannot be cancelled")
            self._set_state(job, await self._final_for_stop(job, CANCELLED))
            await job.asave()
        await self._announce(job)
        return job

    async def retry(self, job_id: int) -> Transcription:
        """Queue a failed, cancelled or partial job again; it resumes at its first unfinished chunk."""
        async with self.store.write_transaction():
            job = await self._locked_existing(job_id)
            if job.current_state not in RETRYABLE:
                raise TransitionRefused(f"Transcription {job_id} is {job.current_state}: only a failed, "
                                        "cancelled or partially completed job can be retried")
            job.error_count = 0
            job.next_attempt_at = None
            self._set_state(job, QUEUED)
            await job.asave()
        await self._announce(job)
        return job

    async def report(self, job_id: int, state: str) -> Transcription:
        """An external worker's report, with the seed's meaning: an error counts towards the limit."""
        if state == PROCESSING_ERROR:
            job = await self.record_error(job_id, None, "reported by an external worker")
            if job is None:
                raise TransitionRefused(await self._refusal(job_id, state))
            return job
        if state in (CANCELLED, COMPLETED_PARTIALLY):
            return await self.cancel(job_id)
        allowed = {QUEUED: (IN_PROGRESS, PROCESSING_ERROR), IN_PROGRESS: (QUEUED, PROCESSING_ERROR),
                   COMPLETED: ACTIVE, PROCESSING_FAIL: ACTIVE}[state]
        job = await self._move(job_id, allowed, state)
        if job is None:
            raise TransitionRefused(await self._refusal(job_id, state))
        return job

    async def _refusal(self, job_id: int, state: str) -> str:
        job = await Transcription.aget_by_id(job_id)
        return f"Transcription {job_id} is {job.current_state}: it cannot become {state}"

    # -- shared -------------------------------------------------------------------------------------------

    async def _move(self, job_id: int, sources: tuple[str, ...], target: str, owner: str | None = None,
                    **fields: Any) -> Transcription | None:
        async with self.store.write_transaction():
            job = await self._locked(job_id)
            if job is None or job.current_state not in sources or (owner and job.lease_owner != owner):
                return None
            for name, value in fields.items():
                setattr(job, name, value)
            self._set_state(job, target)
            await job.asave()
        await self._announce(job)
        return job

    async def _locked_existing(self, job_id: int) -> Transcription:
        job = await self._locked(job_id)
        if job is None:
            raise TransitionRefused(f"Transcription {job_id} no longer exists")
        return job

    async def _locked(self, job_id: int) -> Transcription | None:
        query = Transcription.select().where(Transcription.id == job_id)
        if self.store.is_postgres:
            query = query.for_update()
        rows = await self.store.list(query)
        return rows[0] if rows else None

    @staticmethod
    def _set_state(job: Transcription, target: str) -> None:
        job.current_state = target
        job.update_date = utcnow()
        if target != IN_PROGRESS:
            job.lease_owner = ""
            job.lease_expires_at = None

    async def _final_for_stop(self, job: Transcription, when_nothing_done: str) -> str:
        done = TranscriptionChunk.select().where(TranscriptionChunk.transcription == job.id)
        return COMPLETED_PARTIALLY if await self.store.exists(done) else when_nothing_done

    async def _announce(self, job: Transcription) -> None:
        """Tell the owner; on a final state, also the plugins."""
        self.events.publish(job.creator_id, "state", transcription_id=job.id, state=job.current_state,
                            error_count=job.error_count)
        if job.current_state in FINAL and self.on_finished is not None:
            try:
                self.on_finished(await one_transcription_json(self.store, job))
            except Exception:
                log.exception("a lazyd_transcription_finished hook failed for transcription %d", job.id)


async def queue_counts(store: Store) -> dict[str, int]:
    """How many transcriptions are in each state."""
    query = (Transcription.select(Transcription.current_state, peewee.fn.COUNT(Transcription.id).alias("n"))
             .group_by(Transcription.current_state))
    return {row["current_state"]: row["n"] for row in await store.list(query.dicts())}
