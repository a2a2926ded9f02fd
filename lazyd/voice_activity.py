"""Voice activity detection around decoding, for every backend: nothing is decoded, or kept, where nobody
speaks, and both backends get the same speech regions.

Whisper invents text in long silences, room noise and applause ("Thank you for watching"). Silero VAD
finds the speech first; then

- a stretch without speech of :data:`SKIP_SECS` or more (a break, students working) is not decoded at
  all: the backend decodes only :meth:`SpeechMap.spans` (faster-whisper confines its 30 s windows to them
  with ``clip_timestamps``, in place, so the context carries over the break; whisper.cpp decodes them
  one by one, each prompted with the text before it);
- a segment that lies mostly inside a stretch without speech of :data:`GAP_SECS` or more is dropped.

Everything else is decoded exactly as without VAD, because cutting the audio changes words: cutting every
pause of 2 s or more and joining the speech (faster-whisper's ``vad_filter``, and clips at every such
pause) changed words of the shared corpus, better on some files and worse on others, while this way the
text of continuous speech is the text of the plain call (measured in issue 9 with bench/quality.py).

The detector is Silero VAD as faster-whisper ships it (an ONNX file in its package, run by onnxruntime):
whisper.cpp's own VAD needs a model file that cannot be had offline, so the whisper.cpp backend depends on
faster-whisper for this. It is loaded with a backend's model (:func:`load_detector`), never when lazyd
starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .backend import SAMPLE_RATE

if TYPE_CHECKING:
    import numpy

SKIP_SECS = 30.0
"""A stretch without speech this long is not decoded."""
GAP_SECS = 3.0
"""A segment mostly inside a stretch without speech this long is dropped."""
PAD_SECS = 0.5
"""Taken off both ends of each stretch without speech: the soft start and end of the words around it."""


@dataclass(frozen=True)
class SpeechMap:
    """Where a recording has no speech, as Silero VAD hears it."""

    duration: float
    gaps: tuple[tuple[float, float], ...]
    """Stretches without speech of at least GAP_SECS, each PAD_SECS shorter at both ends, in order."""

    @property
    def silent(self) -> bool:
        return self.gaps == ((0.0, self.duration),)

    def spans(self, skip_secs: float = SKIP_SECS) -> list[tuple[float, float]]:
        """The (start, end) seconds to decode, in order: all but the gaps of ``skip_secs`` or more."""
        spans, at = [], 0.0
        for start, end in self.gaps:
            if end - start >= skip_secs:
                if start > at:
                    spans.append((round(at, 3), round(start, 3)))
                at = end
        if at < self.duration:
            spans.append((round(at, 3), round(self.duration, 3)))
        return spans

    def is_speech(self, start: float, end: float) -> bool:
        """Whether at most half of a segment from ``start`` to ``end`` lies inside the gaps."""
        return seconds_inside(self.gaps, start, end) <= max(end - start, 1e-3) / 2


def seconds_inside(spans: Sequence[tuple[float, float]], start: float, end: float) -> float:
    """How much of [start, end] the (start, end) ``spans``, which do not overlap, cover."""
    return sum(max(0.0, min(end, span_end) - max(start, span_start)) for span_start, span_end in spans)


def load_detector() -> None:
    """Load Silero VAD now; faster-whisper keeps it for the process. A backend calls this when it loads
    its model, so that the worker's first job does not wait for it and the memory it takes (about 30 MB
    with onnxruntime) shows in the loaded worker, not in the middle of a job."""
    from faster_whisper.vad import get_vad_model

    get_vad_model()


def speech_map(audio: numpy.ndarray) -> SpeechMap:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    duration = len(audio) / SAMPLE_RATE
    options = VadOptions(min_silence_duration_ms=round(GAP_SECS * 1000), speech_pad_ms=0)
    stretches = get_speech_timestamps(audio, options, sampling_rate=SAMPLE_RATE)
    if not stretches:
        return SpeechMap(duration, ((0.0, duration),))
    bounds = [0.0, *(stretch[edge] / SAMPLE_RATE for stretch in stretches for edge in ("start", "end")), duration]
    gaps = tuple(_padded(start, end, duration) for start, end in zip(bounds[::2], bounds[1::2])
                 if end - start >= GAP_SECS)
    return SpeechMap(duration, gaps)


def _padded(start: float, end: float, duration: float) -> tuple[float, float]:
    """The gap less PAD_SECS where it meets speech (the recording's own start and end are not speech)."""
    return (start if start == 0.0 else start + PAD_SECS, end if end == duration else end - PAD_SECS)
