"""Voice activity detection before decoding: only the stretches Silero VAD hears speech in are decoded.

Whisper invents text in long silences, room noise and applause ("Thank you for watching"); what is not
decoded cannot be invented. The speech stretches are joined, decoded as one, and every time is mapped
back to the recording (faster-whisper's own ``vad_filter`` does the same, but lazyd needs the joined
audio itself to time words after decoding, see :mod:`.alignment`).

Importing this module imports faster-whisper; the plugin imports it only when a model is loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy
from faster_whisper.transcribe import Segment, restore_speech_timestamps
from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

SAMPLE_RATE = 16_000

VAD_OPTIONS = VadOptions()
"""faster-whisper's defaults."""


def speech_timestamps(audio: numpy.ndarray) -> list[dict[str, int]]:
    """The speech stretches of ``audio`` as ``{"start", "end"}`` sample indices."""
    return get_speech_timestamps(audio, VAD_OPTIONS, sampling_rate=SAMPLE_RATE)


def only_speech(audio: numpy.ndarray, stretches: list[dict[str, int]]) -> numpy.ndarray:
    """The speech stretches of ``audio`` joined; empty when there are none."""
    if not stretches:
        return audio[:0]
    pieces, _metadata = collect_chunks(audio, stretches, sampling_rate=SAMPLE_RATE)
    return numpy.concatenate(pieces)


def in_recording_time(segments: Iterable[Segment], stretches: list[dict[str, int]]) -> Iterator[Segment]:
    """Segments of the joined speech with their (and their words') times mapped back to the recording."""
    return restore_speech_timestamps(segments, stretches, SAMPLE_RATE)
