"""The daemon as a real process, killed (SIGKILL) or stopped (SIGTERM) in the middle of a job, then restarted.

The FAKE tone backend (tests/fake_backend.py) spends a fixed time per second of audio, so a five-chunk job
takes about ten seconds and the test can stop the daemon between two chunks. Its ``calls.log`` records
every chunk it was asked to transcribe, which shows whether finished chunks were done again.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from conftest import POSTGRES_URL, postgres_schema
from daemon_processes import (LEASE_SECS, Daemon, Daemons, Database, fake_calls, login, process_running,
                              transcript, upload, wait_for_state, wait_until_gone)
from pipeline_helpers import TONES, expected_text, tone_sequence

FREQS = TONES + TONES
"""40 s of tones: five 8 s chunks whose first seconds all have different tones."""
SEGMENT_DELAY = 0.2
"""Seconds the fake spends per second of audio: 1.6 s a chunk, 8 s for the job."""
RESUME_DEADLINE = 30.0
"""From the kill to the job's completion; well under LEASE_SECS."""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        yield Database("", sqlite_path=tmp_path / "data" / "lazyd.sqlite3")
        return
    async with postgres_schema() as schema:
        yield Database(f"{POSTGRES_URL}?search_path={schema}", schema=schema)


@pytest.fixture
def control(tmp_path: Path) -> Path:
    path = tmp_path / "fake" / "control.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"delay": SEGMENT_DELAY}))
    return path


@pytest.fixture
def daemons(tmp_path: Path, database: Database, control: Path) -> Iterator[Daemons]:
    started = Daemons(tmp_path, database, control)
    started.add_user("alice")
    yield started
    started.clean_up()


async def wait_mid_chunk(session: aiohttp.ClientSession, headers: dict[str, str], job_id: int, control: Path,
                         done: int) -> None:
    """Until ``done`` chunks are committed and the fake has started on the next one."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        committed = (await transcript(session, headers, job_id))["total"]
        if committed >= done and len(fake_calls(control)) == committed + 1:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the job never got {done} chunk(s) done with the next one running")


async def upload_tones(daemon: Daemon, tmp_path: Path) -> tuple[dict[str, str], int, int]:
    """Log in, upload the five-chunk tone recording; return the headers, the job id and the worker's pid."""
    async with daemon.session() as session:
        headers = await login(session)
        worker = await daemon.worker_pid(session)
        job_id = await upload(session, headers, tone_sequence(tmp_path / "tones.wav", FREQS))
    return headers, job_id, worker


async def assert_completed_exactly_once(daemon: Daemon, database: Database, headers: dict[str, str],
                                        job_id: int, timeout: float) -> list[str]:
    """The job completes with every chunk once, in order, and the uninterrupted text; returns chunk texts."""
    async with daemon.session() as session:
        finished = await wait_for_state(session, headers, job_id, "completed", timeout)
        page = await transcript(session, headers, job_id)
    chunks = page["transcriptions"]
    assert [chunk["chunk_order"] for chunk in chunks] == list(range(len(chunks))) and len(chunks) == 5
    assert page["total"] == 5
    assert await database.chunk_counts(job_id) == {number: 1 for number in range(5)}
    assert " ".join(chunk["transcription"] for chunk in chunks) == expected_text(FREQS)
    assert finished["error_count"] == 0
    return [chunk["transcription"] for chunk in chunks]


# -- the tests -----------------------------------------------------------------------------------------------

async def test_a_killed_daemon_resumes_the_job_at_its_first_unfinished_chunk(daemons, database, control,
                                                                             tmp_path):
    first = await daemons.start()
    headers, job_id, worker = await upload_tones(first, tmp_path)
    async with first.session() as session:
        await wait_mid_chunk(session, headers, job_id, control, done=2)

    first.process.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    assert await first.exit_status() == -signal.SIGKILL
    assert await wait_until_gone(worker, timeout=5), (
        f"the worker {worker} of the killed daemon is still running: it should exit when its stdin closes")

    done_before = await database.chunk_counts(job_id)
    calls_before = fake_calls(control)
    assert 1 <= len(done_before) < 5 and set(done_before.values()) == {1}
    assert (await database.job(job_id))["current_state"] == "in_progress"
    assert len(calls_before) == len(done_before) + 1, "a chunk was running when the daemon was killed"

    second = await daemons.start()
    await second.wait_for_log("requeued 1 job(s) left running by an earlier run of this daemon")
    texts = await assert_completed_exactly_once(second, database, headers, job_id, timeout=RESUME_DEADLINE)
    assert time.monotonic() - killed_at < RESUME_DEADLINE < LEASE_SECS

    first_texts = [text.split()[0] for text in texts]
    calls = fake_calls(control)
    assert calls[:len(calls_before)] == calls_before
    assert calls[len(calls_before):] == [first_texts[n] for n in range(5) if n not in done_before], (
        "after the restart the fake should see exactly the unfinished chunks, in order")
    assert len(calls) <= 5 + 1
    for number in done_before:
        assert calls.count(first_texts[number]) == 1, f"chunk {number} was transcribed again"

    second.process.send_signal(signal.SIGTERM)
    assert await second.exit_status() == 0


async def freeze_with_chunks_in_flight(daemon: Daemon, session: aiohttp.ClientSession, headers: dict[str, str],
                                      job_id: int, database: Database, control: Path, in_flight: int) -> None:
    """Until a chunk is committed and ``in_flight`` chunks after it have been started by the fake; the daemon
    is left frozen (SIGSTOP) at that moment. Parallel chunks finish together, so a commit can land between a
    poll and a kill: the state is read again once the daemon can no longer commit."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        committed = (await transcript(session, headers, job_id))["total"]
        if 1 <= committed and len(fake_calls(control)) >= committed + in_flight:
            daemon.process.send_signal(signal.SIGSTOP)
            committed = len(await database.chunk_counts(job_id))
            if 1 <= committed and len(fake_calls(control)) >= committed + in_flight:
                return
            daemon.process.send_signal(signal.SIGCONT)
        await asyncio.sleep(0.05)
    raise AssertionError(f"the job never had a chunk done with {in_flight} more running")


async def test_a_daemon_killed_with_several_chunks_in_flight_resumes_with_none_lost_or_doubled(
        daemons, database, control, tmp_path):
    daemons.parallel = 3
    first = await daemons.start()
    headers, job_id, worker = await upload_tones(first, tmp_path)
    async with first.session() as session:
        await freeze_with_chunks_in_flight(first, session, headers, job_id, database, control, in_flight=2)

    first.process.send_signal(signal.SIGKILL)
    assert await first.exit_status() == -signal.SIGKILL
    assert await wait_until_gone(worker, timeout=5)
    done_before = await database.chunk_counts(job_id)
    calls_before = fake_calls(control)
    assert done_before == {number: 1 for number in range(len(done_before))}, "chunks are committed in order"
    assert len(calls_before) >= len(done_before) + 2, "several chunks were decoding when the daemon was killed"

    second = await daemons.start()
    texts = await assert_completed_exactly_once(second, database, headers, job_id, timeout=RESUME_DEADLINE)
    first_texts = [text.split()[0] for text in texts]
    calls_after = fake_calls(control)[len(calls_before):]
    assert sorted(calls_after) == sorted(first_texts[n] for n in range(5) if n not in done_before), (
        "after the restart the fake should see exactly the chunks that were not committed, each once")
    second.process.send_signal(signal.SIGTERM)
    assert await second.exit_status() == 0


async def test_sigterm_lets_the_running_chunk_finish_within_the_grace_and_a_restart_redoes_nothing(
        daemons, database, control, tmp_path):
    daemons.shutdown_grace = 30.0
    first = await daemons.start()
    headers, job_id, worker = await upload_tones(first, tmp_path)
    async with first.session() as session:
        await wait_mid_chunk(session, headers, job_id, control, done=1)
    started = len(fake_calls(control))  # the committed chunks and the one decoding now

    first.process.send_signal(signal.SIGTERM)
    assert await first.exit_status(timeout=20) == 0
    assert "Traceback" not in first.log()
    assert await database.job(job_id) == {"current_state": "queued", "error_count": 0, "lease_owner": ""}
    done_before = await database.chunk_counts(job_id)
    assert len(done_before) == started < 5, "the chunk decoding at SIGTERM was kept, no other was begun"

    second = await daemons.start()
    await assert_completed_exactly_once(second, database, headers, job_id, timeout=RESUME_DEADLINE)
    assert len(fake_calls(control)) == 5, "after the restart no chunk was decoded twice"
    second.process.send_signal(signal.SIGTERM)
    assert await second.exit_status() == 0


async def test_sigterm_returns_the_running_job_to_the_queue_and_a_restart_completes_it(daemons, database,
                                                                                        control, tmp_path):
    first = await daemons.start()
    headers, job_id, worker = await upload_tones(first, tmp_path)
    async with first.session() as session:
        await wait_mid_chunk(session, headers, job_id, control, done=1)

    first.process.send_signal(signal.SIGTERM)
    assert await first.exit_status() == 0
    assert "Traceback" not in first.log()
    assert not process_running(worker), "a daemon that stops cleanly leaves no worker behind"
    job = await database.job(job_id)
    assert job == {"current_state": "queued", "error_count": 0, "lease_owner": ""}
    done_before = await database.chunk_counts(job_id)
    assert 1 <= len(done_before) < 5

    second = await daemons.start()
    await assert_completed_exactly_once(second, database, headers, job_id, timeout=RESUME_DEADLINE)
    calls = fake_calls(control)
    assert len(calls) <= 5 + 1
    assert "requeued" not in second.log(), "a released job is plainly queued, not abandoned"

    second.process.send_signal(signal.SIGTERM)
    assert await second.exit_status() == 0


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_the_worker_of_a_killed_daemon_exits_as_soon_as_its_input_closes(daemons, control, tmp_path):
    control.write_text(json.dumps({"delay": 5.0}))  # one slow segment, like a long decoding window
    first = await daemons.start()
    _, _, worker = await upload_tones(first, tmp_path)
    deadline = time.monotonic() + 30
    while not fake_calls(control) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)

    first.process.send_signal(signal.SIGKILL)
    assert await first.exit_status() == -signal.SIGKILL
    assert await wait_until_gone(worker, timeout=2), "the orphaned worker went on with its segment"
