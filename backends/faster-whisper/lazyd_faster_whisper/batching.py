"""Batched decoding that decodes again the speech a window's decode left out.

faster-whisper's batched pipeline decodes each window of speech (up to 30 s, cut by Silero VAD) once,
side by side. Without timestamps, tiny.en often ends a window early: it writes the first sentences and
stops, and nothing decodes the rest (the sequential decoder would seek there). On the shared corpus lazyd's
batch mode lost whole sentences that way (84 word errors in 756, sequential decoding 32).

Here every window's words are timed, and any stretch of a window holding at least
:data:`MISSING_SPEECH_SECS` of speech (by VAD) but no word (after the last word, before the first, or
between two) is decoded again as a window of its own, side by side with the others, for up to
:data:`ROUNDS` rounds. The words of all rounds, in time order, are the transcript.

Measured with bench/transcribe.py (the joined corpus, lazyd batch 8, 2 cores): 41 word errors in 756
against 84 (faster-whisper's own batched call 48, sequential decoding 29), at 27.5x realtime against 43.1x:
the words come back at the cost of the decodes that find them, and of more clips (a pause of
:data:`~lazyd.voice_activity.GAP_SECS` ends one, where faster-whisper joins the speech around it; joining
them too gave 44 errors at +15% speed).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lazyd import SAMPLE_RATE
from lazyd.voice_activity import GAP_SECS, seconds_inside

if TYPE_CHECKING:
    import numpy
    from faster_whisper.transcribe import Segment as WhisperSegment
    from faster_whisper.transcribe import Word as WhisperWord

WINDOW_SECS = 30.0
"""Whisper's window: the longest a clip can be."""
PAD_SECS = 0.4
"""Silence kept before and after each clip's speech (as faster-whisper's VAD pads it), where there is room."""
MIN_SILENCE_MS = 160
"""The shortest pause VAD keeps between two stretches of speech (faster-whisper's batched default)."""
MISSING_SPEECH_SECS = 1.0
"""This much speech without a word in a clip is decoded again (shorter stretches are breaths and the
edges of words that VAD calls speech)."""
ROUNDS = 3
"""Decoding rounds at most: the clips, then what they left out, then what that left out."""

Span = tuple[float, float]


@dataclass(frozen=True)
class TimedWord:
    """A decoded word and the segment (its window's decode) it came from, for the segment's scores."""

    word: WhisperWord
    segment: WhisperSegment


DecodeRound = Callable[[list[Span]], list["WhisperSegment"]]
"""Decodes the clips side by side; their segments, in clip order, with word times in the recording's seconds."""


def speech_stretches(audio: numpy.ndarray) -> list[Span]:
    """Where Silero VAD hears speech, unpadded, in seconds; none longer than a clip can be."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(min_silence_duration_ms=MIN_SILENCE_MS, speech_pad_ms=0,
                         max_speech_duration_s=WINDOW_SECS - 2 * PAD_SECS)
    return [(stretch["start"] / SAMPLE_RATE, stretch["end"] / SAMPLE_RATE)
            for stretch in get_speech_timestamps(audio, options, sampling_rate=SAMPLE_RATE)]


def clips(stretches: Sequence[Span], duration: float) -> list[Span]:
    """Consecutive stretches joined into clips of at most a window, across pauses shorter than
    :data:`~lazyd.voice_activity.GAP_SECS` (a longer one, where Whisper would invent text, ends a clip),
    each padded with up to :data:`PAD_SECS` of the silence around it, never past halfway to the next."""
    joined: list[Span] = []
    for start, end in stretches:
        if joined and end - joined[-1][0] <= WINDOW_SECS - 2 * PAD_SECS and start - joined[-1][1] < GAP_SECS:
            joined[-1] = (joined[-1][0], end)
        else:
            joined.append((start, end))
    bounds = [0.0, *((end + start) / 2 for (_, end), (start, _) in zip(joined, joined[1:])), duration]
    return [(max(low, start - PAD_SECS), min(high, end + PAD_SECS))
            for (start, end), low, high in zip(joined, bounds, bounds[1:])]


def left_out(clip: Span, words: Sequence[WhisperWord], stretches: Sequence[Span]) -> list[Span]:
    """The parts of ``clip`` without a word that hold at least :data:`MISSING_SPEECH_SECS` of speech."""
    edges = [clip[0], *(time for word in words for time in (word.start, word.end)), clip[1]]
    return [(start, end) for start, end in zip(edges[::2], edges[1::2])
            if seconds_inside(stretches, start, end) >= MISSING_SPEECH_SECS]


def decode_in_rounds(first_clips: list[Span], stretches: Sequence[Span], decode: DecodeRound) -> list[TimedWord]:
    """Decode the clips, then what each left out, for up to :data:`ROUNDS` rounds; every word, in time order.

    A clip that gave no word at all is not decoded again: the model heard no speech there, and decoding it
    alone would only invite invented text.
    """
    words: list[TimedWord] = []
    pending = first_clips
    for _ in range(ROUNDS):
        if not pending:
            break
        again = []
        for clip, found in zip(pending, words_by_clip(pending, decode(pending))):
            words.extend(found)
            if found:
                again.extend(left_out(clip, [timed.word for timed in found], stretches))
        pending = again
    return sorted(words, key=lambda timed: timed.word.start)


def words_by_clip(pending: list[Span], segments: list[WhisperSegment]) -> list[list[TimedWord]]:
    """Each clip's words: a segment belongs to the last clip that starts at or before it (clips may touch)."""
    starts = [start for start, _ in pending]
    found: list[list[TimedWord]] = [[] for _ in pending]
    for segment in segments:
        index = max(0, bisect.bisect_right(starts, segment.start + 0.01) - 1)
        found[index].extend(TimedWord(word, segment) for word in segment.words or ())
    return found


def batched_round(pipeline: Any, audio: numpy.ndarray, batch_size: int, arguments: dict[str, Any],
                  on_info: Callable[[Any], None]) -> DecodeRound:
    """A :data:`DecodeRound` on faster-whisper's batched pipeline: without timestamps (one segment per clip;
    with them Whisper drops the text after a clip's last timestamp), words timed. ``on_info`` gets the first
    round's :class:`TranscriptionInfo`; later rounds decode in the language it detected."""
    arguments, rounds = dict(arguments), 0

    def decode(pending: list[Span]) -> list[WhisperSegment]:
        nonlocal rounds
        segments, info = pipeline.transcribe(audio, clip_timestamps=[{"start": start, "end": end}
                                                                     for start, end in pending],
                                             batch_size=batch_size, without_timestamps=True,
                                             word_timestamps=True, vad_filter=False, **arguments)
        if rounds == 0:
            on_info(info)
            arguments["language"] = info.language
        rounds += 1
        return list(segments)

    return decode
