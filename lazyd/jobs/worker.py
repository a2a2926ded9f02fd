"""The daemon's side of a worker process (see ``worker_main``): start it, feed it chunks, watch it.

The model lives in the child, so a segfault, an out-of-memory kill or a hang there costs one attempt of
one chunk: the daemon notices the dead pipe or the silence, kills what is left and starts a new child.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..backend import DetectedLanguage, ModelSpec, Segment, TranscribeOptions

log = logging.getLogger(__name__)

LINE_LIMIT = 16 * 1024 * 1024


class WorkerError(RuntimeError):
    """One chunk failed in the worker; the message says why."""


class WorkerDied(WorkerError):
    """The worker process exited or stopped answering; it must be restarted."""


class WorkerStartFailed(RuntimeError):
    """The worker could not load its model; nothing a retry of the job would fix."""


@dataclass(frozen=True)
class WorkerSetup:
    backend: str
    model: ModelSpec
    plugin_modules: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": asdict(self.model), "plugin_modules": list(self.plugin_modules)}


@dataclass(frozen=True)
class ChunkRequest:
    audio_path: str
    start: float
    end: float
    options: TranscribeOptions = field(default_factory=TranscribeOptions)


@dataclass(frozen=True)
class ChunkDone:
    """What a finished chunk reports besides its segments."""

    language: DetectedLanguage | None = None


@dataclass(frozen=True)
class Timeouts:
    load: float = 600.0
    """Seconds a new worker may take to load its model."""
    stall: float = 600.0
    """Seconds without any answer while transcribing before the worker is declared hung."""
    cancel_grace: float = 3.0
    """Seconds a cancelled chunk may take to stop before the worker is killed."""


_CANCEL = object()
_RUNNING = object()


class WorkerProcess:
    def __init__(self, setup: WorkerSetup, timeouts: Timeouts = Timeouts()) -> None:
        self.setup = setup
        self.timeouts = timeouts
        self.description = ""
        self._process: asyncio.subprocess.Process | None = None
        self._pending_read: asyncio.Task[bytes] | None = None
        self._next_id = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        """Spawn the child and wait until its model is loaded."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lazyd.jobs.worker_main", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, env=env, limit=LINE_LIMIT)
        self._send(self.setup.to_json())
        try:
            message = await self._read(self.timeouts.load)
        except WorkerDied as error:
            raise WorkerStartFailed(str(error)) from None
        except BaseException:  # cancelled while loading (daemon stopping): leave no orphan behind
            await asyncio.shield(self.kill())
            raise
        if message is None or message["event"] != "ready":
            await self.kill()
            reason = "it did not answer in time" if message is None else message.get("message", message)
            raise WorkerStartFailed(f"the {self.setup.backend} worker did not start: {reason}")
        self.description = message["description"]
        log.info("worker %d ready: %s", self.pid, self.description)

    async def transcribe(self, request: ChunkRequest, on_segment: Callable[[Segment], None],
                         cancelled: asyncio.Event) -> ChunkDone | None:
        """Transcribe one chunk, calling ``on_segment`` for each segment (times relative to the chunk).

        Returns what the finished chunk reports, or ``None`` when it was cancelled. Raises
        :class:`WorkerError` when the chunk failed and :class:`WorkerDied` when the worker is gone.
        """
        self._next_id += 1
        request_id = self._next_id
        self._send({"op": "transcribe", "id": request_id, "audio": request.audio_path, "start": request.start,
                    "end": request.end, "options": asdict(request.options)})
        cancel_sent = False
        while True:
            timeout = self.timeouts.cancel_grace if cancel_sent else self.timeouts.stall
            message = await self._read(timeout, None if cancel_sent else cancelled)
            if message is _CANCEL:
                self._send({"op": "cancel", "id": request_id})
                cancel_sent = True
            elif message is None:
                await self.kill()
                if cancel_sent:
                    return None
                raise WorkerDied(f"the worker gave no sign of life for {timeout:.0f} s and was killed")
            elif (outcome := self._handle(message, request_id, on_segment)) is not _RUNNING:
                return outcome

    @staticmethod
    def _handle(message: dict[str, Any], request_id: int, on_segment: Callable[[Segment], None]) -> Any:
        """``_RUNNING`` while the chunk goes on, then its :class:`ChunkDone`, or ``None`` once it is cancelled."""
        if message.get("id") != request_id:
            return _RUNNING
        event = message["event"]
        if event == "segment":
            on_segment(Segment.from_json(message["segment"]))
            return _RUNNING
        if event == "error":
            raise WorkerError(message["message"])
        if event != "done":
            return None
        language = message.get("language")
        return ChunkDone(None if language is None else DetectedLanguage(**language))

    def _send(self, message: dict[str, Any]) -> None:
        if not self.alive:
            raise WorkerDied("the worker process is not running")
        self._process.stdin.write(json.dumps(message).encode() + b"\n")

    async def _read(self, timeout: float, cancelled: asyncio.Event | None = None) -> Any:
        """The next message; ``None`` on timeout; ``_CANCEL`` when ``cancelled`` is set first."""
        if self._pending_read is None:
            self._pending_read = asyncio.ensure_future(self._process.stdout.readline())
        waiters: set[asyncio.Future[Any]] = {self._pending_read}
        cancel_wait = asyncio.ensure_future(cancelled.wait()) if cancelled is not None else None
        if cancel_wait is not None:
            waiters.add(cancel_wait)
        try:
            done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if cancel_wait is not None:
                cancel_wait.cancel()
        if self._pending_read in done:
            line, self._pending_read = self._pending_read.result(), None
            return await self._decode(line)
        return _CANCEL if cancel_wait in done else None

    async def _decode(self, line: bytes) -> dict[str, Any]:
        if not line:
            code = await self._process.wait()
            raise WorkerDied(f"the worker process {_exit_description(code)}")
        try:
            message = json.loads(line)
        except json.JSONDecodeError:  # a half-written line: the worker died while answering
            await self.kill()
            raise WorkerDied(f"the worker process sent a broken message and was killed: {line[:80]!r}") from None
        if message["event"] == "fatal":
            raise WorkerStartFailed(message["message"])
        return message

    async def kill(self) -> None:
        if self._pending_read is not None:
            self._pending_read.cancel()
            self._pending_read = None
        if self.alive:
            self._process.kill()
        if self._process is not None:
            await self._process.wait()

    async def close(self, timeout: float = 5.0) -> None:
        """Ask the child to finish (end of input), then kill it if it lingers."""
        if self.alive:
            self._process.stdin.close()
            try:
                async with asyncio.timeout(timeout):
                    await self._process.wait()
            except TimeoutError:
                log.warning("worker %d did not exit in %.0f s; killing it", self.pid, timeout)
        await self.kill()


def _exit_description(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"
