"""The worker process: loads one backend's model once, then transcribes chunks on request.

Run by the daemon as ``python -m lazyd.jobs.worker_main``; it speaks JSON lines. The first line on stdin is
the setup (backend, model spec, plugin modules, CPU priority); after that each line is
``{"op": "transcribe", "id": N, ...}`` or ``{"op": "cancel", "id": N}``. As many chunks as the model can
decode at once (``parallel`` in ``ready``) are transcribed side by side, each on its own thread; every
reply carries its request's id. Replies on stdout are ``ready``, ``segment``, ``done``, ``cancelled``,
``error`` (one chunk failed, the worker carries on) and ``fatal`` (the worker cannot run and exits).
Anything else written to stdout (by native libraries, say) is redirected to stderr, the daemon's log.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import signal
import sys
import threading
from dataclasses import asdict
from typing import Any, TextIO

from ..audio import decode_window
from ..backend import LoadedModel, ModelSpec, TranscribeOptions
from ..registry import load_registry


class Channel:
    """The protocol stream, kept apart from the process's real stdout."""

    def __init__(self) -> None:
        self._out: TextIO = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        os.dup2(2, 1)
        self._lock = threading.Lock()

    def send(self, event: str, **data: Any) -> None:
        with self._lock:
            self._out.write(json.dumps({"event": event, **data}) + "\n")


class Requests:
    """Reads stdin on a thread, so a cancel can arrive while a chunk is being transcribed."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._cancelled: set[int] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, name="requests", daemon=True).start()

    def _read(self) -> None:
        for line in self._stream:
            message = json.loads(line)
            if message.get("op") == "cancel":
                with self._lock:
                    self._cancelled.add(message["id"])
            else:
                self._queue.put(message)
        # End of input: the daemon closed the pipe or died (kill -9). Exit now rather than at the next
        # segment, which on a big model can be minutes away, holding the CPU or GPU the new daemon needs.
        os._exit(0)

    def next(self) -> dict[str, Any]:
        return self._queue.get()

    def is_cancelled(self, request_id: int) -> bool:
        with self._lock:
            return request_id in self._cancelled


def transcribe_chunk(model: LoadedModel, request: dict[str, Any], requests: Requests, channel: Channel) -> None:
    request_id = request["id"]
    audio = decode_window(request["audio"], request["start"], request["end"] - request["start"])
    options = TranscribeOptions(**request["options"])
    for segment in model.transcribe(audio, options):
        if requests.is_cancelled(request_id):
            channel.send("cancelled", id=request_id)
            return
        channel.send("segment", id=request_id, segment=segment.to_json())
    language = model.detected_language()
    channel.send("done", id=request_id, samples=len(audio), language=None if language is None else asdict(language))


def serve(model: LoadedModel, requests: Requests, channel: Channel) -> None:
    """Answer requests, ``model.parallel`` at once, until the daemon closes our input (then the reader
    thread ends the process)."""
    for number in range(1, model.parallel):
        threading.Thread(target=answer, args=(model, requests, channel), name=f"decode-{number}", daemon=True).start()
    answer(model, requests, channel)


def answer(model: LoadedModel, requests: Requests, channel: Channel) -> None:
    while True:
        request = requests.next()
        try:
            transcribe_chunk(model, request, requests, channel)
        except Exception as error:  # one chunk failed; the model is still loaded and usable
            channel.send("error", id=request["id"], message=f"{type(error).__name__}: {error}")
        give_back_freed_memory()


def give_back_freed_memory() -> None:
    """Return the heap a finished chunk freed to the system. glibc keeps it otherwise, in one arena per
    decoding thread: measured in issue 10, two threads decoding 170 s chunks left the worker at 487 MB
    after three chunks each, and at 270 MB with this after every chunk."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None
    return libc if hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()
M_ARENA_MAX = -8
M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameters: the number of heap arenas, and the size from which a block is mapped."""
MMAP_THRESHOLD_BYTES = 4 << 20


def set_up_heap() -> None:
    """Shape glibc's heap for decoding; call it before any other thread starts.

    - One arena for every decoding thread: each thread otherwise gets its own, and each arena keeps what its
      thread's encoder freed. Measured in issue 10 (two threads decoding 180 s chunks): the worker's peak RSS
      fell from 572-625 MB to 465-484 MB, for the same CPU time.
    - Blocks of :data:`MMAP_THRESHOLD_BYTES` or more always mapped, so freed at once. glibc raises its
      threshold to the largest block freed so far (up to 32 MiB), so that after the first chunks the
      decoder's big buffers come from the heap, fragment it, and each chunk's peak climbs: on a 1-hour
      lecture (bench/transcribe.py's corpus repeated) from +335 to +470 MB above the idle worker. With 4 MiB:
      +252 to +295 MB, and a 2-hour one +308 (+510 before); 3.6% slower on the corpus (32.2x against 33.4x
      realtime, 3 rounds); 1 MiB and 2 MiB map the decoder's per-step buffers too: 22-37% slower.
    """
    if _LIBC is not None:
        _LIBC.mallopt(M_ARENA_MAX, 1)
        _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def lower_priority(niceness: int, idle: bool) -> None:
    """Run below the daemon, so that the API wins the CPU when both want it. Linux keeps the priority per
    thread: it is set on every thread started so far (numpy's BLAS pool starts when it is imported), and
    the model's threads, started later, inherit it. A system that forbids it (a seccomp filter, no
    SCHED_IDLE) costs only the priority, never the worker."""
    try:
        for thread in _threads():
            os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + niceness))
            if idle and hasattr(os, "SCHED_IDLE"):
                os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
    except OSError as error:
        print(f"the worker keeps the daemon's CPU priority: {error}", file=sys.stderr, flush=True)


def _threads() -> list[int]:
    """This process's thread ids (Linux); elsewhere 0, which the calls above read as the calling thread."""
    try:
        return [int(task) for task in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def load_model(setup: dict[str, Any]) -> LoadedModel:
    registry = load_registry(modules=setup.get("plugin_modules", ()))
    backend = registry.backends[setup["backend"]]
    return backend.load(ModelSpec(**setup["model"]))


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the daemon stops us
    set_up_heap()
    channel = Channel()
    setup = json.loads(sys.stdin.readline())
    lower_priority(setup.get("niceness", 0), setup.get("idle_priority", False))
    try:
        model = load_model(setup)
    except Exception as error:
        channel.send("fatal", message=f"cannot load the model: {type(error).__name__}: {error}")
        return 1
    try:
        channel.send("ready", description=model.description, pid=os.getpid(), parallel=model.parallel)
        serve(model, Requests(sys.stdin), channel)
    except BrokenPipeError:  # the daemon went away; nobody is left to answer
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
