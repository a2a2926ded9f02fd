"""The daemon as a real process, killed (SIGKILL) or stopped (SIGTERM) in the middle of a job, then restarted.

The FAKE tone backend (tests/fake_backend.py) spends a fixed time per second of audio, so a five-chunk job
takes about ten seconds and the test can stop the daemon between two chunks. Its ``calls.log`` records
every chunk it was asked to transcribe, which shows whether finished chunks were done again.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from conftest import POSTGRES_URL, postgres_schema
from pipeline_helpers import TONES, expected_text, tone_sequence

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
PASSWORD = "Correct_horse1"
FREQS = TONES + TONES
"""40 s of tones: five 8 s chunks whose first seconds all have different tones."""
CHUNK_SECS = 8
SEGMENT_DELAY = 0.2
"""Seconds the fake spends per second of audio: 1.6 s a chunk, 8 s for the job."""
ADMIN_TOKEN = "durability-admin-token"
LEASE_SECS = 60.0
"""Long on purpose: a restart that waited for the killed daemon's lease to expire would miss the deadline."""
RESUME_DEADLINE = 30.0
"""From the kill to the job's completion; well under LEASE_SECS."""


# -- the database, read directly while no daemon runs ----------------------------------------------------------

@dataclass
class Database:
    """Where the daemon keeps its store, and raw read access to it (no lazyd code involved)."""

    url: str
    """The value for LAZYD_DATABASE__URL; "" for the SQLite file in the data directory."""
    sqlite_path: Path | None = None
    schema: str = ""

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.sqlite_path is not None:
            with sqlite3.connect(self.sqlite_path) as connection:
                return [tuple(row) for row in connection.execute(sql)]
        connection = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": self.schema})
        try:
            return [tuple(row) for row in await connection.fetch(sql)]
        finally:
            await connection.close()

    async def chunk_counts(self, job_id: int) -> dict[int, int]:
        """How many rows each chunk number has."""
        found = await self.rows(f"SELECT chunk_no, COUNT(*) FROM transcription_chunks "
                                f"WHERE transcript_id = {int(job_id)} GROUP BY chunk_no")
        return {chunk_no: count for chunk_no, count in found}

    async def job(self, job_id: int) -> dict[str, Any]:
        [(state, errors, owner)] = await self.rows(
            f"SELECT current_state, error_count, lease_owner FROM transcriptions WHERE id = {int(job_id)}")
        return {"current_state": state, "error_count": errors, "lease_owner": owner}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        yield Database("", sqlite_path=tmp_path / "data" / "lazyd.sqlite3")
        return
    async with postgres_schema() as schema:
        yield Database(f"{POSTGRES_URL}?search_path={schema}", schema=schema)


# -- the daemon as a subprocess ------------------------------------------------------------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped counts as gone)."""
    if Path("/proc/self/stat").exists():
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (FileNotFoundError, ProcessLookupError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def wait_until_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process_running(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@dataclass
class Daemons:
    """Starts ``lazyd serve`` processes on one data directory and one database, one at a time."""

    tmp_path: Path
    database: Database
    control: Path
    started: list[subprocess.Popen] = field(default_factory=list)
    worker_pids: set[int] = field(default_factory=set)
    parallel: int = 1
    """Chunks the worker decodes at once."""
    shutdown_grace: float = 0.0
    """Seconds a SIGTERM leaves the chunks being decoded to finish (0: stop them at once)."""

    @property
    def data_dir(self) -> Path:
        return self.tmp_path / "data"

    def env(self) -> dict[str, str]:
        settings = {
            "LAZYD_DATA_DIR": str(self.data_dir),
            "LAZYD_PLUGINS__MODULES": "fake_backend",
            "LAZYD_TRANSCRIPTION__BACKEND": "fake",
            "LAZYD_TRANSCRIPTION__MODEL": str(self.control),
            "LAZYD_TRANSCRIPTION__CHUNK_SECS": str(CHUNK_SECS),
            "LAZYD_TRANSCRIPTION__CUT_WINDOW_SECS": "1",
            "LAZYD_TRANSCRIPTION__CUT_OVERLAP_SECS": "0",  # each fake call hears its own chunk (calls.log)
            "LAZYD_TRANSCRIPTION__PARALLEL": str(self.parallel),
            "LAZYD_LIMITS__MIN_AUDIO_SECS": "1",
            "LAZYD_SCHEDULER__LEASE_SECS": str(LEASE_SECS),
            "LAZYD_SCHEDULER__POLL_SECS": "0.2",
            "LAZYD_SCHEDULER__STALL_TIMEOUT_SECS": "30",
            "LAZYD_SCHEDULER__CANCEL_GRACE_SECS": "1",
            "LAZYD_SCHEDULER__SHUTDOWN_GRACE_SECS": str(self.shutdown_grace),
            "LAZYD_AUTH__BCRYPT_ROUNDS": "4",
            "LAZYD_AUTH__ADMIN_TOKEN": ADMIN_TOKEN,  # /health shows an admin the worker processes
            "LAZYD_LOGGING__LEVEL": "info",
        }
        if self.database.url:
            settings["LAZYD_DATABASE__URL"] = self.database.url
        inherited = {name: value for name, value in os.environ.items() if not name.startswith("LAZYD_")}
        path = os.pathsep.join(filter(None, [str(TESTS_DIR), inherited.get("PYTHONPATH", "")]))
        return {**inherited, **settings, "PYTHONPATH": path}

    def add_user(self, name: str) -> None:
        result = subprocess.run([sys.executable, "-m", "lazyd", "user", "add", name, "--can-interact",
                                 "--password-stdin"], input=PASSWORD + "\n", capture_output=True, text=True,
                                env=self.env(), cwd=REPO_ROOT, timeout=60)
        assert result.returncode == 0, result.stderr

    async def start(self) -> Daemon:
        port = _free_port()
        log = self.tmp_path / f"daemon-{len(self.started) + 1}.log"
        with log.open("w") as stream:
            process = subprocess.Popen([sys.executable, "-m", "lazyd", "serve", "--port", str(port)],
                                       env=self.env(), cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                                       stdout=stream, stderr=subprocess.STDOUT)
        self.started.append(process)
        daemon = Daemon(process, port, log, self)
        await daemon.wait_for_log("listening on")
        return daemon

    def clean_up(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait()
        for pid in self.worker_pids:  # only if a test failed and left a worker behind
            if process_running(pid):
                os.kill(pid, signal.SIGKILL)


@dataclass
class Daemon:
    process: subprocess.Popen
    port: int
    log_path: Path
    daemons: Daemons

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_for_log(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared in the daemon's log:\n{self.log()}")
            await asyncio.sleep(0.05)

    def session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(self.base_url)

    async def worker_pid(self, session: aiohttp.ClientSession, timeout: float = 30) -> int:
        """The pid of the (live) worker process, from ``GET /health``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            async with session.get("/health", headers={"X-Admin-Token": ADMIN_TOKEN}) as response:
                workers = (await response.json())["backend"].get("workers", [])
            live = [worker["pid"] for worker in workers if worker["alive"] and worker["pid"]]
            if live:
                self.daemons.worker_pids.update(live)
                return live[0]
            await asyncio.sleep(0.1)
        raise AssertionError(f"no worker process showed up in /health:\n{self.log()}")

    async def exit_status(self, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while (code := self.process.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"the daemon did not exit within {timeout} s:\n{self.log()}")
            await asyncio.sleep(0.05)
        return code


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


# -- talking to a daemon -------------------------------------------------------------------------------------

async def login(session: aiohttp.ClientSession) -> dict[str, str]:
    async with session.post("/auth/login", json={"username": "alice", "password": PASSWORD}) as response:
        assert response.status == 200, await response.text()
        return {"Authorization": f"Bearer {(await response.json())['access_token']}"}


async def upload(session: aiohttp.ClientSession, headers: dict[str, str], path: Path) -> int:
    form = aiohttp.FormData()
    form.add_field("audiofile", path.read_bytes(), filename=path.name, content_type="audio/wav")
    async with session.post("/upload-audiofile", data=form, headers=headers) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["task_id"]


async def transcript(session: aiohttp.ClientSession, headers: dict[str, str], job_id: int) -> dict[str, Any]:
    async with session.get(f"/transcript?task_id={job_id}&size=1000", headers=headers) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def info(session: aiohttp.ClientSession, headers: dict[str, str], job_id: int) -> dict[str, Any]:
    async with session.get(f"/transcript/info?transcript_id={job_id}", headers=headers) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def wait_for_state(session: aiohttp.ClientSession, headers: dict[str, str], job_id: int, state: str,
                         timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (found := await info(session, headers, job_id))["current_state"] != state:
        if time.monotonic() > deadline:
            raise AssertionError(f"transcription {job_id} stayed {found['current_state']}, wanted {state}")
        await asyncio.sleep(0.1)
    return found


def fake_calls(control: Path) -> list[str]:
    """The first text of each chunk the fake was asked to transcribe, in call order."""
    calls_log = control.with_name("calls.log")
    lines = calls_log.read_text().splitlines() if calls_log.exists() else []
    return [line.split()[2] for line in lines]


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
