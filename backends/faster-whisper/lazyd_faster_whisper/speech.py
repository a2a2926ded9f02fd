"""Voice activity detection around decoding: nothing is decoded, or kept, where nobody speaks.

Whisper invents text in long silences, room noise and applause ("Thank you for watching"). Silero VAD
finds the speech first; then

- a stretch without speech of :data:`SKIP_SECS` or more (a break, students working) is not decoded at
  all: faster-whisper's ``clip_timestamps`` confine its 30 s windows to the rest, in place, so times need
  no mapping and the context carries over the break;
- a segment that lies mostly inside a stretch without speech of :data:`GAP_SECS` or more is dropped.

Everything else is decoded exactly as without VAD, because cutting the audio changes words: cutting every
pause of 2 s or more and joining the speech (faster-whisper's ``vad_filter``, and clips at every such
pause) changed words of the shared corpus, better on some files and worse on others, while this way the
text of continuous speech is the text of the plain call (measured in issue 9 with bench/quality.py).

Importing this module imports faster-whisper; the plugin imports it only when a model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy
from faster_whisper.transcribe import Segment
from faster_whisper.vad import VadOptions, get_speech_timestamps

SAMPLE_RATE = 16_000
SKIP_SECS = 30.0
"""A stretch without speech this long is not decoded."""
GAP_SECS = 3.0
"""A segment mostly inside a stretch without speech this long is dropped."""
PAD_SECS = 0.5
"""Taken off both ends of each stretch without speech: the soft start and end of the words around it."""
VAD_OPTIONS = VadOptions(min_silence_duration_ms=round(GAP_SECS * 1000), speech_pad_ms=0)


@dataclass(frozen=True)
class SpeechMap:
    """Where a recording has no speech, as Silero VAD hears it."""

    duration: float
    gaps: tuple[tuple[float, float], ...]
    """Stretches without speech of at least GAP_SECS, each PAD_SECS shorter at both ends, in order."""

    @property
    def silent(self) -> bool:
        return self.gaps == ((0.0, self.duration),)

    def clips(self) -> list[float]:
        """``[start, end, ...]`` seconds to decode, as ``clip_timestamps`` takes it: all but the long gaps."""
        edges, at = [], 0.0
        for start, end in self.gaps:
            if end - start >= SKIP_SECS:
                if start > at:
                    edges += [at, start]
                at = end
        if at < self.duration:
            edges += [at, self.duration]
        return [round(edge, 3) for edge in edges]

    def is_speech(self, segment: Segment) -> bool:
        """Whether at most half of ``segment`` lies inside the gaps."""
        length = max(segment.end - segment.start, 1e-3)
        inside = sum(max(0.0, min(segment.end, end) - max(segment.start, start)) for start, end in self.gaps)
        return inside <= length / 2


def speech_map(audio: numpy.ndarray) -> SpeechMap:
    duration = len(audio) / SAMPLE_RATE
    stretches = get_speech_timestamps(audio, VAD_OPTIONS, sampling_rate=SAMPLE_RATE)
    if not stretches:
        return SpeechMap(duration, ((0.0, duration),))
    bounds = [0.0, *(stretch[edge] / SAMPLE_RATE for stretch in stretches for edge in ("start", "end")), duration]
    gaps = tuple(_padded(start, end, duration) for start, end in zip(bounds[::2], bounds[1::2])
                 if end - start >= GAP_SECS)
    return SpeechMap(duration, gaps)


def _padded(start: float, end: float, duration: float) -> tuple[float, float]:
    """The gap less PAD_SECS where it meets speech (the recording's own start and end are not speech)."""
    return (start if start == 0.0 else start + PAD_SECS, end if end == duration else end - PAD_SECS)
