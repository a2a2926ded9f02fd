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
from collections.abc import Callable, Coroutine
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
    niceness: int = 0
    """Added to the worker's nice value: the daemon's API should win the CPU when both want it."""
    idle_priority: bool = False
    """The worker runs only when nothing else wants the CPU (SCHED_IDLE, where the system has it)."""

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": asdict(self.model), "plugin_modules": list(self.plugin_modules),
                "niceness": self.niceness, "idle_priority": self.idle_priority}


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


class WorkerProcess:
    """One worker process; it transcribes up to :attr:`capacity` chunks at once, each request told apart by
    its id. One reader task hands each reply to the request it answers."""

    def __init__(self, setup: WorkerSetup, timeouts: Timeouts = Timeouts()) -> None:
        self.setup = setup
        self.timeouts = timeouts
        self.description = ""
        self.capacity = 1
        """How many chunks the loaded model decodes at once (the backend says, in ``ready``)."""
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._replies: dict[int, asyncio.Queue[dict[str, Any] | WorkerDied]] = {}
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
            async with asyncio.timeout(self.timeouts.load):
                message = await self._next_message()
        except TimeoutError:
            message = None
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
        self.capacity = max(1, int(message.get("parallel", 1)))
        self._reader = asyncio.create_task(self._dispatch())
        log.info("worker %d ready: %s", self.pid, self.description)

    async def transcribe(self, request: ChunkRequest, on_segment: Callable[[Segment], None],
                         cancelled: asyncio.Event) -> ChunkDone | None:
        """Transcribe one chunk, calling ``on_segment`` for each segment (times relative to the chunk).

        Returns what the finished chunk reports, or ``None`` when it was cancelled. Raises
        :class:`WorkerError` when the chunk failed and :class:`WorkerDied` when the worker is gone. Several
        calls may run at once, up to :attr:`capacity`; more wait in the worker for a free decoder. A call
        whose task is cancelled tells the worker to stop that chunk.
        """
        self._next_id += 1
        request_id = self._next_id
        replies = self._replies[request_id] = asyncio.Queue()
        try:
            self._send({"op": "transcribe", "id": request_id, "audio": request.audio_path,
                        "start": request.start, "end": request.end, "options": asdict(request.options)})
            return await self._follow(request_id, replies, on_segment, cancelled)
        except asyncio.CancelledError:
            self._cancel(request_id)
            raise
        finally:
            del self._replies[request_id]

    async def _follow(self, request_id: int, replies: asyncio.Queue[dict[str, Any] | WorkerDied],
                      on_segment: Callable[[Segment], None], cancelled: asyncio.Event) -> ChunkDone | None:
        cancel_sent = False
        while True:
            timeout = self.timeouts.cancel_grace if cancel_sent else self.timeouts.stall
            reply = await _first(replies.get(), timeout, None if cancel_sent else cancelled)
            if reply is _CANCEL:
                self._cancel(request_id)
                cancel_sent = True
            elif reply is None:
                await self.kill()
                if cancel_sent:
                    return None
                raise WorkerDied(f"the worker gave no sign of life for {timeout:.0f} s and was killed")
            elif isinstance(reply, WorkerDied) and cancel_sent:
                return None  # killed while stopping this chunk (another chunk's grace ran out)
            elif (outcome := self._handle(reply, on_segment)) is not _RUNNING:
                return outcome

    @staticmethod
    def _handle(reply: dict[str, Any] | WorkerDied, on_segment: Callable[[Segment], None]) -> Any:
        """``_RUNNING`` while the chunk goes on, then its :class:`ChunkDone`, or ``None`` once it is cancelled."""
        if isinstance(reply, WorkerDied):
            raise reply
        event = reply["event"]
        if event == "segment":
            on_segment(Segment.from_json(reply["segment"]))
            return _RUNNING
        if event == "error":
            raise WorkerError(reply["message"])
        if event != "done":
            return None
        language = reply.get("language")
        return ChunkDone(None if language is None else DetectedLanguage(**language))

    def _cancel(self, request_id: int) -> None:
        if self.alive:
            self._send({"op": "cancel", "id": request_id})

    async def _dispatch(self) -> None:
        """Hand every reply to its request; when the worker dies, tell every request waiting."""
        try:
            while True:
                message = await self._next_message()
                if (replies := self._replies.get(message.get("id"))) is not None:
                    replies.put_nowait(message)
        except (WorkerError, WorkerStartFailed) as error:
            died = error if isinstance(error, WorkerDied) else WorkerDied(str(error))
            for replies in self._replies.values():
                replies.put_nowait(died)

    async def _next_message(self) -> dict[str, Any]:
        line = await self._process.stdout.readline()
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

    def _send(self, message: dict[str, Any]) -> None:
        if not self.alive:
            raise WorkerDied("the worker process is not running")
        self._process.stdin.write(json.dumps(message).encode() + b"\n")

    async def kill(self) -> None:
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
        if self._reader is not None:
            await self._reader


_CANCEL = object()
_RUNNING = object()


async def _first(reply: Coroutine[Any, Any, Any], timeout: float, cancelled: asyncio.Event | None) -> Any:
    """The reply; ``None`` when none came within ``timeout``; ``_CANCEL`` when ``cancelled`` is set first."""
    waiters = {reading := asyncio.ensure_future(reply)}
    if cancelled is not None:
        waiters.add(asyncio.ensure_future(cancelled.wait()))
    try:
        done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    if reading in done:
        return reading.result()
    return _CANCEL if done else None


def _exit_description(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"
