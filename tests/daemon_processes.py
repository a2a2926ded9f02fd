"""lazyd daemons as real processes (``lazyd serve``) on one data directory and one database, driven over
HTTP and read directly from the database: the durability and scale-out tests' helpers."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from conftest import POSTGRES_URL

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
PASSWORD = "Correct_horse1"
CHUNK_SECS = 8
ADMIN_TOKEN = "durability-admin-token"
LEASE_SECS = 60.0
"""Long on purpose: a restart that waited for the killed daemon's lease to expire would miss the deadline."""


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

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of ``lazyd`` commands; ``extra`` adds or replaces ``LAZYD_`` settings."""
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
        settings.update(extra)
        inherited = {name: value for name, value in os.environ.items() if not name.startswith("LAZYD_")}
        path = os.pathsep.join(filter(None, [str(TESTS_DIR), inherited.get("PYTHONPATH", "")]))
        return {**inherited, **settings, "PYTHONPATH": path}

    def add_user(self, name: str) -> None:
        result = subprocess.run([sys.executable, "-m", "lazyd", "user", "add", name, "--can-interact",
                                 "--password-stdin"], input=PASSWORD + "\n", capture_output=True, text=True,
                                env=self.env(), cwd=REPO_ROOT, timeout=60)
        assert result.returncode == 0, result.stderr

    async def start(self, ready: str = "listening on", **settings: str) -> Daemon:
        """A new ``lazyd serve``, with ``settings`` (``LAZYD_`` variables) of its own, once its log says
        ``ready``."""
        port = _free_port()
        log = self.tmp_path / f"daemon-{len(self.started) + 1}.log"
        with log.open("w") as stream:
            process = subprocess.Popen([sys.executable, "-m", "lazyd", "serve", "--port", str(port)],
                                       env=self.env(**settings), cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                                       stdout=stream, stderr=subprocess.STDOUT)
        self.started.append(process)
        daemon = Daemon(process, port, log, self)
        await daemon.wait_for_log(ready)
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


