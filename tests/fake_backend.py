"""A FAKE backend for scheduler tests: it "hears" tones, not speech, and misbehaves on request.

Each second of audio becomes one segment whose text names the tone's frequency in that second, to
the nearest 100 Hz (``tone400``), estimated from zero crossings, so the transcript depends on the audio and on where the
chunk starts, like a real one. The behaviour is steered by a JSON control file whose path is configured
as the model name; it decodes as many chunks at once as ``[transcription] parallel`` asks for:

    {"delay": 0.05,                               seconds to spend per segment
     "misbehave": {"mode": "segfault" | "sigkill" | "exception" | "hang",
                   "calls": [2],                  which transcribe calls (1-based, counted across restarts)
                   "heard": ["tone1900"]}}        and which calls whose audio starts with these tones

Every call is appended to ``calls.log`` beside the control file: ``<call> <samples> <first text>``, and
the decoding options it was given to ``options.jsonl``, one JSON object per call. ``running`` holds how
many calls are decoding now, ``most_running`` the most there ever were at once.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy

from lazyd import SAMPLE_RATE, Backend, DeviceSupport, LoadedModel, ModelSpec, Segment, TranscribeOptions, hookimpl


class FakeModel(LoadedModel):
    def __init__(self, control: Path, parallel: int) -> None:
        self.control = control
        self.description = f"FAKE tone detector ({control.name})"
        self.parallel = parallel
        self._files = threading.Lock()
        self._running = 0

    def _settings(self) -> dict:
        return json.loads(self.control.read_text())

    def _next_call(self) -> int:
        counter = self.control.with_name("calls.count")
        call = int(counter.read_text()) + 1 if counter.exists() else 1
        _write_whole(counter, str(call))
        return call

    def transcribe(self, audio: numpy.ndarray, options: TranscribeOptions) -> Iterator[Segment]:
        seconds = round(len(audio) / SAMPLE_RATE)
        texts = [_tone_name(audio[n * SAMPLE_RATE:(n + 1) * SAMPLE_RATE]) for n in range(seconds)]
        with self._files:  # several calls run at once when the model is loaded with parallel > 1
            settings, call = self._settings(), self._next_call()
            with self.control.with_name("options.jsonl").open("a") as log:
                log.write(json.dumps(dataclasses.asdict(options)) + "\n")
            with self.control.with_name("calls.log").open("a") as log:
                log.write(f"{call} {len(audio)} {texts[0] if texts else '-'}\n")
        misbehave = settings.get("misbehave", {})
        self._count_running(+1)
        try:
            for n, text in enumerate(texts):
                if n == 1 and (call in misbehave.get("calls", []) or texts[0] in misbehave.get("heard", [])):
                    _misbehave(misbehave["mode"])
                time.sleep(settings.get("delay", 0.0))
                yield Segment(float(n), float(n + 1), text, avg_logprob=-0.1, no_speech_prob=0.01)
        finally:
            self._count_running(-1)

    def _count_running(self, change: int) -> None:
        with self._files:
            self._running += change
            most = self.control.with_name("most_running")
            if self._running > (int(most.read_text()) if most.exists() else 0):
                _write_whole(most, str(self._running))
            _write_whole(self.control.with_name("running"), str(self._running))


def _tone_name(second: numpy.ndarray) -> str:
    """The frequency of the tone in this stretch, to the nearest 100 Hz, measured over its sounding part."""
    frames = second[: len(second) // 160 * 160].reshape(-1, 160)
    sounding = numpy.repeat(numpy.sqrt(numpy.mean(frames ** 2, axis=1)) > 0.01, 160)
    if not sounding.any():
        return "silence"
    flips = numpy.diff(numpy.signbit(frames.ravel())) & sounding[1:] & sounding[:-1]
    seconds = sounding.sum() / SAMPLE_RATE
    return f"tone{int(round(numpy.count_nonzero(flips) / 2 / seconds / 100)) * 100}"


def _misbehave(mode: str) -> None:
    if mode == "segfault":
        ctypes.string_at(0)
    elif mode == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif mode == "hang":
        time.sleep(3600)
    raise RuntimeError("the fake backend was told to fail here")


class FakeBackend(Backend):
    name = "fake"

    def devices(self) -> list[DeviceSupport]:
        return [DeviceSupport("cpu", True, "a fake runs anywhere")]

    def load(self, spec: ModelSpec) -> LoadedModel:
        return FakeModel(Path(spec.model), spec.parallel)


@hookimpl
def lazyd_register_backends() -> list[Backend]:
    return [FakeBackend()]


def _write_whole(path: Path, text: str) -> None:
    """Replace the file at once: a worker killed while writing (a test kills its daemon) must never leave it
    empty for the next worker to read."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)
