"""The scheduler's failure handling: worker crashes and hangs, the retry limit, cancel, retry, database errors.

Every test runs the whole daemon with the FAKE tone backend (tests/fake_backend.py), told through its
control file which transcribe calls to break and how. A 20-second upload is planned as three chunks, so
without failures the fake is called three times, and its call log says which chunk each call started at.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import inspect
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import peewee
import pytest
from aiohttp.test_utils import TestClient

from conftest import Accounts, admin_health, fake_sections
from lazyd.jobs.worker_main import lower_priority
from lazyd.store import Transcription, TranscriptionChunk
from lazyd.web import create_app
from lazyd.web.keys import DAEMON
from pipeline_helpers import TONES, chunk_texts, expected_text, tone_sequence, upload, wait_for_state

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""For cases where the database plays no part beyond what the tests on both databases cover."""

ALL_CHUNKS_ONCE = [(1, "tone300"), (2, "tone1100"), (3, "tone1900")]
"""The fake's calls for ``TONES`` when nothing goes wrong: each chunk once, heard from its first tone."""
WAIT = 30.0
"""Generous: a slow two-core machine must pass; a working daemon takes a fraction of this."""


class Fake:
    """The FAKE backend's control file, and the trace it leaves beside it."""

    def __init__(self, control: Path) -> None:
        self.control = control

    def steer(self, delay: float = 0.0, mode: str | None = None, calls: tuple[int, ...] = (),
              heard: tuple[str, ...] = ()) -> None:
        """Spend ``delay`` seconds per segment; misbehave in ``mode`` on the given calls (1-based), and on
        those whose audio starts with a tone in ``heard``."""
        settings: dict[str, Any] = {"delay": delay}
        if mode is not None:
            settings["misbehave"] = {"mode": mode, "calls": list(calls), "heard": list(heard)}
        self.control.parent.mkdir(parents=True, exist_ok=True)
        self.control.write_text(json.dumps(settings))

    def calls(self) -> list[tuple[int, str]]:
        """Each transcribe call so far: its number and the first thing it heard."""
        log = self.control.with_name("calls.log")
        lines = log.read_text().split("\n")[:-1] if log.exists() else []  # not a line still being written
        return [(int(call), first) for call, _samples, first in (line.split() for line in lines)]

    def running(self) -> int:
        """How many calls are decoding now."""
        return self._number("running")

    def most_running(self) -> int:
        """The most calls that ever decoded at once."""
        return self._number("most_running")

    def _number(self, name: str) -> int:
        path = self.control.with_name(name)
        text = path.read_text() if path.exists() else ""
        return int(text) if text.strip() else 0

    def count(self) -> int:
        """The fake's call counter; 0 in the instant it rewrites the file."""
        return self._number("calls.count")


class Events:
    """One user's live events from ``GET /ws``, collected in the background."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.received.append(message.json())

    def states(self, job_id: int) -> list[str]:
        return [event["state"] for event in self.of(job_id, "state")]

    async def history(self, job_id: int, until: str) -> list[str]:
        """The states the job went through, once the event of reaching ``until`` has come in."""
        await eventually(lambda: until in self.states(job_id))
        return self.states(job_id)

    def segments(self, job_id: int, chunk_no: int) -> int:
        return sum(event["chunk_order"] == chunk_no for event in self.of(job_id, "segment"))

    def of(self, job_id: int, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.received
                if event["type"] == kind and event.get("transcription_id") == job_id]

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class User:
    """A logged-in user of the daemon under test, with their live events."""

    def __init__(self, client: TestClient, headers: dict[str, str], events: Events, folder: Path) -> None:
        self.client = client
        self.headers = headers
        self.events = events
        self.folder = folder

    async def submit(self, freqs: list[int], name: str = "lecture") -> int:
        audio = tone_sequence(self.folder / f"{name}.wav", freqs)
        response = await upload(self.client, self.headers, audio)
        assert response.status == 200, await response.text()
        return (await response.json())["task_id"]

    async def info(self, job_id: int) -> dict[str, Any]:
        response = await self.client.get(f"/transcript/info?transcript_id={job_id}", headers=self.headers)
        assert response.status == 200, await response.text()
        return await response.json()

    async def wait_until(self, job_id: int, *states: str) -> dict[str, Any]:
        return await wait_for_state(self.client, self.headers, job_id, states, timeout=WAIT)

    async def cancel(self, job_id: int) -> aiohttp.ClientResponse:
        return await self.client.post(f"/transcript/cancel?transcript_id={job_id}", headers=self.headers)

    async def retry(self, job_id: int) -> aiohttp.ClientResponse:
        return await self.client.post(f"/transcript/retry?transcript_id={job_id}", headers=self.headers)


class Daemon:
    """The daemon with its scheduler, as the API shows it."""

    def __init__(self, client: TestClient, folder: Path) -> None:
        self.client = client
        self.folder = folder
        self.accounts = Accounts(client)
        self.users: list[User] = []

    async def login(self, username: str) -> User:
        headers = await self.accounts.headers(username, can_interact=True)
        events = Events(await self.client.ws_connect("/ws", headers=headers))
        folder = self.folder / username
        folder.mkdir(parents=True, exist_ok=True)
        self.users.append(User(self.client, headers, events, folder))
        return self.users[-1]

    async def answers(self) -> bool:
        """``GET /`` says the API is up and its database reachable."""
        response = await self.client.get("/")
        return response.status == 200 and await response.json() == {"api": True, "database": True}

    async def worker_pid(self, other_than: int | None = None) -> int:
        """The pid of the one worker, once it is running (and is not ``other_than``)."""
        async def running() -> int | None:
            workers = (await admin_health(self.client))["backend"]["workers"]
            pids = [worker["pid"] for worker in workers if worker["alive"] and worker["pid"] != other_than]
            return pids[0] if pids else None

        return await eventually(running)


async def eventually(probe: Callable[[], Any], timeout: float = WAIT) -> Any:
    """The first true value ``probe`` gives (awaited if need be), polling until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting after {timeout:.0f} s"
        await asyncio.sleep(0.05)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def control(tmp_path: Path) -> Path:
    return tmp_path / "fake" / "control.json"


@pytest.fixture
def fake(control: Path) -> Fake:
    fake = Fake(control)
    fake.steer()
    return fake


@pytest.fixture
async def start_daemon(aiohttp_client: Callable, make_config: Callable, database_url: str, control: Path,
                       tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Daemon]]]:
    """Start the daemon on the FAKE backend; keyword arguments replace ``[scheduler]`` keys."""
    started: list[Daemon] = []

    async def start(**scheduler: object) -> Daemon:
        config = make_config(database_url, fake_sections(control, **scheduler))
        started.append(Daemon(await aiohttp_client(create_app(config)), tmp_path / "uploads"))
        return started[-1]

    yield start
    for daemon in started:
        for user in daemon.users:
            await user.events.close()


# -- a failed attempt -------------------------------------------------------------------------------------

async def a_failed_attempt_is_retried(daemon: Daemon, fake: Fake) -> tuple[int, Transcription]:
    """Run ``TONES`` with call 2 (chunk 1's first try) broken; return the worker pid before, and the job."""
    alice = await daemon.login("alice")
    first_worker = await daemon.worker_pid()
    job_id = await alice.submit(TONES)
    await eventually(lambda: "processing_error" in alice.events.states(job_id))
    assert await daemon.answers()
    info = await alice.wait_until(job_id, "completed", "processing_fail", "completed_partially")
    assert info["current_state"] == "completed" and info["error_count"] == 1
    assert await alice.events.history(job_id, "completed") == [
        "queued", "in_progress", "processing_error", "in_progress", "completed"]
    assert " ".join(await chunk_texts(job_id)) == expected_text(TONES)
    assert fake.calls() == [(1, "tone300"), (2, "tone1100"), (3, "tone1100"), (4, "tone1900")]
    assert await daemon.answers()
    return first_worker, await Transcription.aget_by_id(job_id)


async def test_a_worker_segfault_mid_chunk_fails_only_that_attempt(start_daemon, fake):
    fake.steer(mode="segfault", calls=(2,))
    daemon = await start_daemon()
    first_worker, job = await a_failed_attempt_is_retried(daemon, fake)
    assert "SIGSEGV" in job.last_error
    assert not process_exists(first_worker)
    assert await daemon.worker_pid() != first_worker


@SQLITE_ONLY
async def test_a_worker_killed_by_sigkill_mid_chunk_fails_only_that_attempt(start_daemon, fake):
    fake.steer(mode="sigkill", calls=(2,))
    daemon = await start_daemon()
    first_worker, job = await a_failed_attempt_is_retried(daemon, fake)
    assert "SIGKILL" in job.last_error
    assert not process_exists(first_worker)
    assert await daemon.worker_pid() != first_worker


@SQLITE_ONLY
async def test_an_exception_in_the_backend_fails_the_attempt_but_keeps_the_worker(start_daemon, fake):
    fake.steer(mode="exception", calls=(2,))
    daemon = await start_daemon()
    first_worker, job = await a_failed_attempt_is_retried(daemon, fake)
    assert job.last_error == "RuntimeError: the fake backend was told to fail here"
    assert await daemon.worker_pid() == first_worker


@SQLITE_ONLY
async def test_a_hung_worker_is_killed_after_the_stall_timeout_and_the_job_retried(start_daemon, fake):
    fake.steer(mode="hang", calls=(2,))
    daemon = await start_daemon(stall_timeout_secs=2)
    first_worker, job = await a_failed_attempt_is_retried(daemon, fake)
    assert "no sign of life for 2 s" in job.last_error
    assert not process_exists(first_worker)
    assert await daemon.worker_pid() != first_worker


@SQLITE_ONLY
async def test_a_hung_worker_does_not_stop_the_daemon_serving(start_daemon, fake):
    fake.steer(mode="hang", calls=(1,))
    daemon = await start_daemon(stall_timeout_secs=3)
    alice = await daemon.login("alice")
    job_id = await alice.submit(TONES)
    await eventually(lambda: alice.events.segments(job_id, chunk_no=0) == 1)  # then it hangs
    hung_since = time.monotonic()
    while time.monotonic() - hung_since < 1.0:
        assert await daemon.answers()
        assert (await alice.info(job_id))["current_state"] == "in_progress"
        await asyncio.sleep(0.1)
    info = await alice.wait_until(job_id, "completed", "processing_fail", "completed_partially")
    assert info["current_state"] == "completed" and info["error_count"] == 1
    assert fake.calls() == [(1, "tone300"), (2, "tone300"), (3, "tone1100"), (4, "tone1900")]


# -- the retry limit ------------------------------------------------------------------------------------

async def test_three_failures_with_nothing_done_fail_the_job(start_daemon, fake):
    fake.steer(mode="exception", calls=(1, 2, 3))
    daemon = await start_daemon(max_attempts=3)
    alice = await daemon.login("alice")
    job_id = await alice.submit(TONES)
    info = await alice.wait_until(job_id, "processing_fail", "completed_partially", "completed")
    assert info["current_state"] == "processing_fail" and info["error_count"] == 3
    assert await alice.events.history(job_id, "processing_fail") == [
        "queued", "in_progress", "processing_error", "in_progress", "processing_error", "in_progress",
        "processing_fail"]
    assert await chunk_texts(job_id) == []
    assert fake.calls() == [(1, "tone300"), (2, "tone300"), (3, "tone300")]
    assert await daemon.answers()


async def test_three_failures_after_a_finished_chunk_complete_the_job_partially(start_daemon, fake):
    fake.steer(mode="segfault", calls=(2, 3, 4))
    daemon = await start_daemon(max_attempts=3)
    alice = await daemon.login("alice")
    job_id = await alice.submit(TONES)
    info = await alice.wait_until(job_id, "completed_partially", "processing_fail", "completed")
    assert info["current_state"] == "completed_partially" and info["error_count"] == 3
    assert info["description"] == expected_text(TONES[:8])
    assert await chunk_texts(job_id) == [expected_text(TONES[:8])]
    assert fake.calls() == [(1, "tone300"), (2, "tone1100"), (3, "tone1100"), (4, "tone1100")]
    assert await daemon.answers()


# -- cancel -----------------------------------------------------------------------------------------------

async def cancel_mid_chunk(daemon: Daemon, fake: Fake, chunk_no: int) -> tuple[User, int]:
    """Cancel ``TONES`` once chunk ``chunk_no`` is under way; check the chunk stopped, the worker stayed."""
    fake.steer(delay=0.6)  # eight segments a chunk: some 5 s to cancel in, on a loaded machine too
    alice = await daemon.login("alice")
    worker = await daemon.worker_pid()
    job_id = await alice.submit(TONES)
    await eventually(lambda: alice.events.segments(job_id, chunk_no) >= 1)
    response = await alice.cancel(job_id)
    assert response.status == 200 and response.content_type == "text/plain" and await response.text() == "OK"

    fake.steer()
    next_job = await alice.submit(TONES[:3], name="next")
    await eventually(lambda: fake.count() == chunk_no + 2, timeout=10.0)  # the slot took the next job
    await alice.wait_until(next_job, "completed")
    assert alice.events.segments(job_id, chunk_no) < 8, "the cancelled chunk ran to its end"
    assert await daemon.worker_pid() == worker
    return alice, job_id


async def test_cancelling_mid_chunk_keeps_finished_chunks_and_stops_the_running_one(start_daemon, fake):
    daemon = await start_daemon(cancel_grace_secs=5)  # the worker must stop by itself, not be killed
    alice, job_id = await cancel_mid_chunk(daemon, fake, chunk_no=1)
    assert (await alice.info(job_id))["current_state"] == "completed_partially"
    assert await alice.events.history(job_id, "completed_partially") == ["queued", "in_progress", "completed_partially"]
    assert await chunk_texts(job_id) == [expected_text(TONES[:8])]
    assert fake.calls() == [(1, "tone300"), (2, "tone1100"), (3, "tone300")]  # call 3: the next job
    again = await alice.cancel(job_id)
    assert again.status == 409
    assert "completed_partially" in (await again.json())["detail"]
    assert await daemon.answers()


async def test_cancelling_before_any_chunk_is_done_leaves_the_job_cancelled(start_daemon, fake):
    daemon = await start_daemon(cancel_grace_secs=5)  # the worker must stop by itself, not be killed
    alice, job_id = await cancel_mid_chunk(daemon, fake, chunk_no=0)
    assert (await alice.info(job_id))["current_state"] == "cancelled"
    assert await alice.events.history(job_id, "cancelled") == ["queued", "in_progress", "cancelled"]
    assert await chunk_texts(job_id) == []
    assert fake.calls() == [(1, "tone300"), (2, "tone300")]  # call 2: the next job
    again = await alice.cancel(job_id)
    assert again.status == 409
    assert "cancelled" in (await again.json())["detail"]


@SQLITE_ONLY
async def test_a_cancelled_chunk_that_does_not_stop_is_killed_after_the_grace_period(start_daemon, fake):
    fake.steer(mode="hang", calls=(2,))
    daemon = await start_daemon(cancel_grace_secs=1)
    alice = await daemon.login("alice")
    first_worker = await daemon.worker_pid()
    job_id = await alice.submit(TONES)
    await eventually(lambda: alice.events.segments(job_id, chunk_no=1) == 1)  # then it hangs
    response = await alice.cancel(job_id)
    assert response.status == 200 and await response.text() == "OK"
    cancelled_at = time.monotonic()
    replacement = await daemon.worker_pid(other_than=first_worker)
    assert time.monotonic() - cancelled_at < 10, "the hung worker outlived the cancel by far"
    assert not process_exists(first_worker)
    next_job = await alice.submit(TONES[:3], name="next")
    await alice.wait_until(next_job, "completed")
    info = await alice.info(job_id)
    assert info["current_state"] == "completed_partially" and info["error_count"] == 0
    assert await alice.events.history(job_id, "completed_partially") == ["queued", "in_progress", "completed_partially"]
    assert await chunk_texts(job_id) == [expected_text(TONES[:8])]
    assert fake.calls() == [(1, "tone300"), (2, "tone1100"), (3, "tone300")]  # call 3: the next job
    assert await daemon.worker_pid() == replacement


async def test_cancelling_a_queued_job_means_it_never_runs(start_daemon, fake):
    fake.steer(delay=0.6)  # brian's chunk runs some 5 s: time for alice's upload and cancel
    daemon = await start_daemon()
    brian, alice = await daemon.login("brian"), await daemon.login("alice")
    brians = await brian.submit(TONES[:8])
    await eventually(lambda: brian.events.segments(brians, chunk_no=0) >= 1)
    alices = await alice.submit([2500] * 8)
    response = await alice.cancel(alices)
    assert response.status == 200 and await response.text() == "OK"
    assert (await brian.info(brians))["current_state"] == "in_progress", "brian's job was too quick for this test"
    fake.steer()

    await brian.wait_until(brians, "completed")
    brians_next = await brian.submit(TONES[:3], name="next")  # claimed after alice's if hers were runnable
    await brian.wait_until(brians_next, "completed")
    assert (await alice.info(alices))["current_state"] == "cancelled"
    assert await alice.events.history(alices, "cancelled") == ["queued", "cancelled"]
    assert fake.calls() == [(1, "tone300"), (2, "tone300")]


# -- several chunks at once ---------------------------------------------------------------------------------

FORTY_TONES = TONES + TONES
"""Five chunks of 8 s: with three decoded at once, the later ones start before the first is committed."""


async def chunk_rows(job_id: int) -> list[TranscriptionChunk]:
    """The job's chunk rows in the order they were committed (row ids grow with each insert)."""
    query = TranscriptionChunk.select().where(TranscriptionChunk.transcription == job_id)
    return sorted(await TranscriptionChunk._meta.database.list(query), key=lambda row: row.id)


async def test_chunks_decoded_at_once_are_committed_in_order_each_exactly_once(start_daemon, fake):
    fake.steer(delay=0.05)  # chunk 0 costs as much as any other: each chunk takes 0.4 s
    daemon = await start_daemon(parallel=3)
    alice = await daemon.login("alice")
    job_id = await alice.submit(FORTY_TONES)
    assert (await alice.wait_until(job_id, "completed", "processing_fail"))["current_state"] == "completed"
    assert fake.most_running() == 3, "three chunks should have been decoded at once"
    assert sorted(first for _, first in fake.calls()) == sorted(f"tone{freq}" for freq in FORTY_TONES[::8])
    rows = await chunk_rows(job_id)
    assert [row.chunk_no for row in rows] == [0, 1, 2, 3, 4], "chunks were committed out of order"
    assert " ".join(row.text for row in rows) == expected_text(FORTY_TONES)
    segments = alice.events.of(job_id, "segment")
    assert [event["text"] for event in segments] == [f"tone{freq}" for freq in FORTY_TONES], (
        "the live stream should carry each segment once, in the order of the recording")
    assert [event["start"] for event in segments] == sorted(event["start"] for event in segments)


async def test_cancel_stops_every_chunk_in_flight(start_daemon, fake):
    fake.steer(delay=0.5)  # each chunk takes 4 s
    daemon = await start_daemon(parallel=3, cancel_grace_secs=5)  # they must stop by themselves
    alice = await daemon.login("alice")
    worker = await daemon.worker_pid()
    job_id = await alice.submit(FORTY_TONES)
    await eventually(lambda: fake.running() == 3)
    response = await alice.cancel(job_id)
    assert response.status == 200
    cancelled_at = time.monotonic()
    await eventually(lambda: fake.running() == 0)
    assert time.monotonic() - cancelled_at < 3.0, "the chunks in flight did not stop at their next segment"
    info = await alice.wait_until(job_id, "cancelled", "completed_partially")
    assert info["current_state"] == "cancelled" and await chunk_texts(job_id) == []
    assert len(fake.calls()) == 3, "no chunk should start after the cancel"
    fake.steer()
    next_job = await alice.submit(TONES[:3], name="next")
    assert (await alice.wait_until(next_job, "completed"))["current_state"] == "completed"
    assert await daemon.worker_pid() == worker


async def test_a_failing_chunk_fails_the_attempt_and_keeps_the_chunks_committed_before_it(start_daemon, fake):
    fake.steer(delay=0.2, mode="exception", heard=("tone1900",))  # chunk 2 fails while chunks 0 and 1 decode
    daemon = await start_daemon(parallel=3, max_attempts=1)
    alice = await daemon.login("alice")
    job_id = await alice.submit(FORTY_TONES)
    info = await alice.wait_until(job_id, "completed_partially", "processing_fail", "completed")
    assert info["current_state"] == "completed_partially"
    assert "told to fail" in (await Transcription.aget_by_id(job_id)).last_error
    assert [row.chunk_no for row in await chunk_rows(job_id)] == [0, 1]
    await eventually(lambda: fake.running() == 0)
    assert await daemon.answers()


# -- retry --------------------------------------------------------------------------------------------------

async def test_retrying_a_failed_job_runs_it_again_from_the_start(start_daemon, fake):
    fake.steer(mode="exception", calls=(1, 2, 3))
    daemon = await start_daemon(max_attempts=3)
    alice = await daemon.login("alice")
    job_id = await alice.submit(TONES)
    await alice.wait_until(job_id, "processing_fail")
    response = await alice.retry(job_id)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["current_state"] == "queued" and body["error_count"] == 0
    info = await alice.wait_until(job_id, "completed", "processing_fail", "completed_partially")
    assert info["current_state"] == "completed" and info["error_count"] == 0
    assert " ".join(await chunk_texts(job_id)) == expected_text(TONES)
    assert fake.calls()[3:] == [(4, "tone300"), (5, "tone1100"), (6, "tone1900")]


async def test_retrying_a_partial_job_resumes_at_the_first_unfinished_chunk(start_daemon, fake):
    fake.steer(mode="segfault", calls=(2, 3, 4))
    daemon = await start_daemon(max_attempts=3)
    alice = await daemon.login("alice")
    job_id = await alice.submit(TONES)
    await alice.wait_until(job_id, "completed_partially")
    response = await alice.retry(job_id)
    assert response.status == 200, await response.text()
    assert (await response.json())["current_state"] == "queued"
    info = await alice.wait_until(job_id, "completed", "processing_fail")
    assert info["current_state"] == "completed"
    assert " ".join(await chunk_texts(job_id)) == expected_text(TONES)
    assert fake.calls()[4:] == [(5, "tone1100"), (6, "tone1900")]
    assert [first for _, first in fake.calls()].count("tone300") == 1, "a finished chunk was redone"


@SQLITE_ONLY
async def test_a_completed_job_can_be_neither_retried_nor_cancelled(start_daemon, fake):
    daemon = await start_daemon()
    alice = await daemon.login("alice")
    job_id = await alice.submit(TONES)
    await alice.wait_until(job_id, "completed")
    for response in (await alice.retry(job_id), await alice.cancel(job_id)):
        assert response.status == 409
        assert "completed" in (await response.json())["detail"]
    assert (await alice.info(job_id))["current_state"] == "completed"
    assert fake.calls() == ALL_CHUNKS_ONCE


# -- the worker process -------------------------------------------------------------------------------------

@SQLITE_ONLY
async def test_a_worker_that_dies_while_idle_is_replaced_before_the_next_job(start_daemon, fake):
    daemon = await start_daemon()
    alice = await daemon.login("alice")
    first_worker = await daemon.worker_pid()
    os.kill(first_worker, signal.SIGKILL)
    replacement = await daemon.worker_pid(other_than=first_worker)
    assert not process_exists(first_worker)  # nor left a zombie
    assert await daemon.answers()
    job_id = await alice.submit(TONES)
    info = await alice.wait_until(job_id, "completed", "processing_error", "processing_fail")
    assert info["current_state"] == "completed" and info["error_count"] == 0
    assert await alice.events.history(job_id, "completed") == ["queued", "in_progress", "completed"]
    assert fake.calls() == ALL_CHUNKS_ONCE
    assert await daemon.worker_pid() == replacement


@SQLITE_ONLY
async def test_an_idle_worker_unloads_its_model_and_the_next_job_loads_it_again(start_daemon, fake):
    daemon = await start_daemon(unload_idle_secs=1.0)
    alice = await daemon.login("alice")
    first_worker = await daemon.worker_pid()

    async def unloaded() -> bool:
        workers = (await admin_health(daemon.client))["backend"]["workers"]
        return workers == [{"slot": 0, "pid": None, "alive": False, "model": "", "parallel": 0, "loaded": False}]

    await eventually(unloaded)
    assert not process_exists(first_worker), "an unloaded model's worker process should be gone"
    job_id = await alice.submit(TONES)
    assert (await alice.wait_until(job_id, "completed", "processing_fail"))["current_state"] == "completed"
    assert fake.calls() == ALL_CHUNKS_ONCE
    workers = (await admin_health(daemon.client))["backend"]["workers"]
    assert [(worker["loaded"], worker["parallel"]) for worker in workers] == [(True, 1)]
    assert workers[0]["pid"] != first_worker


@SQLITE_ONLY
async def test_the_worker_runs_at_a_lower_priority_than_the_daemon(start_daemon, fake):
    daemon = await start_daemon(worker_niceness=7)
    worker = await daemon.worker_pid()
    threads = [int(task) for task in os.listdir(f"/proc/{worker}/task")]
    assert len(threads) > 1
    niceness = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 7)
    assert {os.getpriority(os.PRIO_PROCESS, thread) for thread in threads} == {niceness}
    # by default every thread decodes only on idle CPU time, numpy's, started before the priority was set, too
    assert {os.sched_getscheduler(thread) for thread in threads} == {os.SCHED_IDLE}


def test_a_worker_forbidden_to_lower_its_priority_still_runs(monkeypatch, capsys):
    """Under a seccomp filter without setpriority (an older lazyd.service) the worker keeps its priority."""
    def refused(*args: Any) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "setpriority", refused)
    lower_priority(10, idle=True)
    assert "keeps the daemon's CPU priority" in capsys.readouterr().err


MAPPED_AFTER_A_BIG_FREE = """
import ctypes, sys
from lazyd.jobs.worker_main import set_up_heap
if sys.argv[1] == "set up":
    set_up_heap()
libc = ctypes.CDLL("libc.so.6")
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
libc.free(libc.malloc(16 << 20))
block = libc.malloc(8 << 20)
print(libc.mallinfo2().hblkhd >= 8 << 20)
"""


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="needs glibc 2.33 or newer (mallinfo2)")
def test_the_worker_maps_big_blocks_even_after_freeing_a_bigger_one():
    """glibc raises its mmap threshold to the largest block freed, after which a decoder's big buffers come
    from the heap and each chunk's peak climbs; the worker pins the threshold. A fresh process each time:
    the settings are for the whole process."""
    def mapped(how: str) -> str:
        return subprocess.run([sys.executable, "-c", MAPPED_AFTER_A_BIG_FREE, how], capture_output=True,
                              text=True, check=True).stdout.strip()

    assert (mapped("set up"), mapped("glibc's defaults")) == ("True", "False")


@SQLITE_ONLY
async def test_without_idle_priority_the_worker_is_only_niced(start_daemon, fake):
    daemon = await start_daemon(worker_idle_priority=False)
    assert os.sched_getscheduler(await daemon.worker_pid()) == os.SCHED_OTHER


# -- the database -------------------------------------------------------------------------------------------

def fail_first(method: Callable[..., Awaitable[Any]], times: int = 1,
               when: Callable[..., bool] = lambda *args: True) -> Callable[..., Awaitable[Any]]:
    """``method``, except that its first ``times`` calls for which ``when(*args)`` holds raise a database error."""
    failures = []

    async def flaky(*args: Any) -> Any:
        if len(failures) < times and when(*args):
            failures.append(args)
            raise peewee.OperationalError("database is locked")
        return await method(*args)

    return flaky


@SQLITE_ONLY
async def test_a_database_error_while_claiming_does_not_stop_the_scheduler(start_daemon, fake):
    daemon = await start_daemon()
    states = daemon.client.app[DAEMON].states
    states.claim = fail_first(states.claim, times=3)
    alice = await daemon.login("alice")
    job_id = await alice.submit(TONES)
    info = await alice.wait_until(job_id, "completed", "processing_fail", "completed_partially")
    assert info["current_state"] == "completed" and info["error_count"] == 0
    assert fake.calls() == ALL_CHUNKS_ONCE


@SQLITE_ONLY
async def test_a_chunk_the_database_refused_is_kept_and_saved_when_it_answers_again(start_daemon, fake,
                                                                                   monkeypatch):
    """A database outage (a restart, a network blip) while a chunk is saved costs neither the chunk nor the
    attempt: the decoded chunk is offered again until the database takes it."""
    from lazyd.jobs import scheduler as scheduler_module

    monkeypatch.setattr(scheduler_module, "SAVE_RETRY_SECS", 0.1)
    daemon = await start_daemon()
    states = daemon.client.app[DAEMON].states
    states.save_chunk = fail_first(states.save_chunk, times=2, when=lambda job_id, owner, chunk: chunk.chunk_no == 1)
    alice = await daemon.login("alice")
    first_worker = await daemon.worker_pid()
    job_id = await alice.submit(TONES)
    info = await alice.wait_until(job_id, "completed", "processing_fail", "completed_partially")
    assert info["current_state"] == "completed" and info["error_count"] == 0
    assert await alice.events.history(job_id, "completed") == ["queued", "in_progress", "completed"]
    assert " ".join(await chunk_texts(job_id)) == expected_text(TONES)
    assert fake.calls() == ALL_CHUNKS_ONCE
    assert await daemon.worker_pid() == first_worker
    assert await daemon.answers()


@SQLITE_ONLY
async def test_a_failed_lease_renewal_is_tried_again_so_no_other_slot_takes_the_job(start_daemon, fake):
    fake.steer(delay=0.2)  # five seconds for the twenty segments: longer than the lease
    daemon = await start_daemon(workers=2, lease_secs=3.0)
    states = daemon.client.app[DAEMON].states
    states.renew = fail_first(states.renew)
    alice = await daemon.login("alice")
    job_id = await alice.submit(TONES)
    info = await alice.wait_until(job_id, "completed", "processing_fail", "completed_partially")
    assert info["current_state"] == "completed"
    assert await alice.events.history(job_id, "completed") == ["queued", "in_progress", "completed"]
    assert fake.calls() == ALL_CHUNKS_ONCE


@SQLITE_ONLY
async def test_each_slot_holds_its_own_lease(start_daemon, fake):
    fake.steer(delay=0.2)
    daemon = await start_daemon(workers=2)
    alice, bob = await daemon.login("alice"), await daemon.login("bobby")
    jobs = [await alice.submit(TONES), await bob.submit(TONES)]

    async def both_running() -> list[Transcription]:
        rows = [await Transcription.aget_by_id(job) for job in jobs]
        return rows if all(row.current_state == "in_progress" for row in rows) else []

    deadline = time.monotonic() + 30
    while not (running := await both_running()):
        assert time.monotonic() < deadline, "the two jobs never ran at the same time"
        await asyncio.sleep(0.05)
    owners = {row.lease_owner for row in running}
    assert len(owners) == 2 and {owner.rsplit("/", 1)[1] for owner in owners} == {"0", "1"}
    assert len({owner.rsplit("/", 1)[0] for owner in owners}) == 1
    for user, job in ((alice, jobs[0]), (bob, jobs[1])):
        assert (await user.wait_until(job, "completed", "processing_fail"))["current_state"] == "completed"
