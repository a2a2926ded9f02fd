"""The job state machine on its own, on the real store: taking over dead leases, and retry backoff."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from conftest import PASSWORD
from lazyd import users
from lazyd.auth import PasswordHasher
from lazyd.jobs.events import EventHub
from lazyd.jobs.states import ChunkResult, JobStates, Quota, RetryPolicy
from lazyd.store import Store, Transcription, utcnow

LEASE = timedelta(seconds=30)
THEIRS, OURS = "other-node/run1/0", "this-node/run1/0"
QUOTA = Quota(None, None)
"""No limit on jobs."""


@pytest.fixture
async def states(database_url: str) -> AsyncIterator[JobStates]:
    store = await Store.open(database_url, pool_size=2)
    yield JobStates(store, EventHub(), RetryPolicy(max_attempts=3, backoff=timedelta(seconds=10)))
    await store.close()


async def _job(**fields) -> Transcription:
    owner = await users.create_user(PasswordHasher(4), "alice", PASSWORD)
    return await Transcription.acreate(creator=owner, audio_len_secs=30.0, chunk_size_secs=10.0, **fields)


async def test_a_job_whose_lease_expired_on_another_daemon_is_taken_over_and_fenced(states):
    job = await _job(current_state="in_progress", lease_owner=THEIRS, lease_expires_at=utcnow() + LEASE)
    assert await states.claim(OURS, LEASE) is None, "a live lease was taken over"

    await Transcription.update(lease_expires_at=utcnow() - timedelta(seconds=1)).where(
        Transcription.id == job.id).aexecute()
    claimed = await states.claim(OURS, LEASE)
    assert (claimed.id, claimed.lease_owner, claimed.current_state) == (job.id, OURS, "in_progress")
    assert not await states.renew(job.id, THEIRS, LEASE), "the old owner renewed a lease it lost"
    stale = ChunkResult(0, 0.0, 10.0, "written by a daemon that lost the job", [])
    assert not await states.save_chunk(job.id, THEIRS, stale), "the old owner wrote into a job it lost"
    assert await states.renew(job.id, OURS, LEASE)


async def test_a_failed_attempt_waits_its_backoff_which_doubles(states):
    job = await _job(current_state="in_progress", lease_owner=OURS, lease_expires_at=utcnow() + LEASE)
    for attempt, backoff in [(1, 10), (2, 20)]:
        before = utcnow()
        failed = await states.record_error(job.id, OURS, f"attempt {attempt} failed")
        assert (failed.current_state, failed.error_count) == ("processing_error", attempt)
        wait = (failed.next_attempt_at - before).total_seconds()
        assert backoff <= wait < backoff + 5
        assert await states.claim(OURS, LEASE) is None, "retried before its backoff was over"
        await Transcription.update(next_attempt_at=utcnow() - timedelta(seconds=1)).where(
            Transcription.id == job.id).aexecute()
        assert (await states.claim(OURS, LEASE)).id == job.id
    final = await states.record_error(job.id, OURS, "attempt 3 failed")
    assert (final.current_state, final.error_count) == ("processing_fail", 3)


async def test_each_chunk_keeps_its_language_and_the_job_takes_the_one_spoken_longest(states):
    from lazyd.backend import DetectedLanguage
    from lazyd.store import TranscriptionChunk

    job = await _job(current_state="in_progress", lease_owner=OURS, lease_expires_at=utcnow() + LEASE)
    detected = [(0.0, 5.0, DetectedLanguage("de", 0.6)), (5.0, 20.0, DetectedLanguage("en", 0.9)),
                (20.0, 30.0, DetectedLanguage("en", 0.7))]
    expected_job = [("de", 0.6), ("en", 0.9), ("en", 0.82)]  # by audio length: 15 s at 0.9, 10 s at 0.7
    for number, ((start, end, language), expected) in enumerate(zip(detected, expected_job)):
        assert await states.save_chunk(job.id, OURS, ChunkResult(number, start, end, "text", [], language))
        row = await Transcription.aget_by_id(job.id)
        assert (row.language, row.language_probability) == expected
    chunks = await states.store.list(TranscriptionChunk.select().order_by(TranscriptionChunk.chunk_no))
    assert [(chunk.language, chunk.language_probability) for chunk in chunks] == [
        ("de", 0.6), ("en", 0.9), ("en", 0.7)]


async def test_a_resumed_job_knows_the_last_word_the_chunk_before_kept(states):
    """The chunk after a cut starts after the last word the chunk before kept; after a restart that word
    comes back from the database, as stored."""
    from lazyd.backend import ModelSpec, Segment, Word
    from lazyd.config import Config
    from lazyd.jobs.cuts import last_word
    from lazyd.metrics import Metrics
    from lazyd.jobs.scheduler import Scheduler
    from lazyd.jobs.worker import WorkerSetup

    job = await _job(current_state="in_progress", lease_owner=OURS, lease_expires_at=utcnow() + LEASE)
    words = (Word(8.0, 8.4, "around", 0.9), Word(8.5, 9.89, "it.", 0.9))
    spoken = Segment(8.0, 9.89, "around it.", words, -0.2, 0.01)
    assert await states.save_chunk(job.id, OURS, ChunkResult(0, 0.0, 10.0, "around it.", [spoken.to_json()]))
    scheduler = Scheduler(Config(), states, WorkerSetup("fake", ModelSpec()), Metrics())
    assert last_word(await scheduler._chunk_segments(job.id, 0)) == words[-1]
    assert await scheduler._chunk_segments(job.id, 1) == []


async def test_a_daemon_claims_only_jobs_whose_model_it_has(states):
    owner = await users.create_user(PasswordHasher(4), "alice", PASSWORD)
    wants = {}
    for model in ("medium", "small.en", ""):
        job, _ = await states.enqueue(owner.id, QUOTA, audio_len_secs=30.0, chunk_size_secs=10.0,
                                      options={"model": model} if model else {})
        wants[job.id] = model
    assert {job_id: (await Transcription.aget_by_id(job_id)).requested_model for job_id in wants} == wants
    small = await states.claim("small-box/run1/0", LEASE, frozenset({"small.en", "tiny.en"}))
    any_model = await states.claim("small-box/run1/1", LEASE, frozenset({"small.en", "tiny.en"}))
    assert {wants[small.id], wants[any_model.id]} == {"small.en", ""}
    assert await states.claim("small-box/run1/2", LEASE, frozenset({"small.en", "tiny.en"})) is None
    big = await states.claim("big-box/run1/0", LEASE, frozenset({"medium"}))
    assert wants[big.id] == "medium" and big.node == "big-box"


async def test_a_model_given_as_a_path_is_anyones(states):
    owner = await users.create_user(PasswordHasher(4), "alice", PASSWORD)
    job, _ = await states.enqueue(owner.id, QUOTA, audio_len_secs=30.0, chunk_size_secs=10.0,
                                  options={"model": "/srv/models/lecture-tuned"})
    assert job.requested_model == ""
    assert (await states.claim(OURS, LEASE, frozenset())).id == job.id
