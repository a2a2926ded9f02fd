"""Word timings that cannot change the text: decode first, then time the words of what was decoded.

faster-whisper's ``word_timestamps=True`` aligns each 30 s window's words while decoding and starts the
next window at the last aligned word. When the alignment ends a word early or late, the next window starts
in the wrong place and speech is skipped: on a 44 s reading it dropped seven words mid-sentence, and on the
joined shared corpus it raised the WER from 4.37% to 5.16% (issue 9). lazyd therefore decodes with
``word_timestamps=False``, where windows follow the decoder's own timestamps, and times the words of each
window right after the window is decoded: the same alignment faster-whisper runs (cross-attention and
dynamic time warping over the window's encoder output, ``WhisperModel.add_word_timestamps``), on the same
encoder output, but with no say in where the next window starts. The text is the text of the plain call.

Importing this module imports faster-whisper; the plugin imports it only when a model is loaded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import ctranslate2
import numpy
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import Segment, Word

from .features import BlockwiseFeatureExtractor

PREPEND_PUNCTUATIONS = "\"'\u201c\u00bf([{-"
APPEND_PUNCTUATIONS = "\"'.\u3002,\uff0c!\uff01?\uff1f:\uff1a\u201d)]}\u3001"
"""faster-whisper's defaults for ``transcribe``: punctuation joined to the word before or after it."""


class WordTiming:
    """The word timings of one transcription, made window by window as faster-whisper decodes."""

    def __init__(self) -> None:
        self.last_speech_end = 0.0
        self._words: dict[tuple[int, tuple[int, ...]], list[dict[str, Any]]] = {}

    def align(self, model: WhisperModel, window: list[dict[str, Any]], tokenizer: Tokenizer,
              encoded: ctranslate2.StorageView, num_frames: int) -> None:
        """Time the words of one window's segments (faster-whisper's dicts, changed in place)."""
        end = model.add_word_timestamps([window], tokenizer, encoded, num_frames, PREPEND_PUNCTUATIONS,
                                        APPEND_PUNCTUATIONS, self.last_speech_end)
        self.last_speech_end = end if end is not None else self.last_speech_end
        for segment in window:
            self._words[_key(segment["seek"], segment["tokens"])] = segment.get("words", [])

    def with_words(self, segment: Segment) -> Segment:
        """``segment`` as faster-whisper yielded it, with the words timed for it."""
        words = self._words.pop(_key(segment.seek, segment.tokens), [])
        return replace(segment, words=[Word(**word) for word in words])


class WordAligningWhisperModel(WhisperModel):
    """A ``WhisperModel`` that times each decoded window's words while :meth:`timing_words` is active.

    Two of faster-whisper's steps are extended, both called once per 30 s window of ``generate_segments``
    in this order: :meth:`encode` (the window's encoder output is kept) and
    ``_split_segments_by_timestamps`` (the window's segments, cut from the decoded tokens, are aligned
    against that output). Only timestamps inside each segment change; the seek that picks the next
    window has already been decided from the tokens. faster-whisper is pinned to the minor version this
    was written against, and the backend's tests check text and words on every run.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.feature_extractor = BlockwiseFeatureExtractor(**self.feat_kwargs)  # same features, less memory
        self._encoding = threading.Lock()
        self._this_thread = threading.local()
        """Each thread's transcription in progress: its :class:`WordTiming` and its window's encoder output
        (with several CTranslate2 workers, several threads decode with this model at once)."""

    @property
    def timing(self) -> WordTiming | None:
        return getattr(self._this_thread, "timing", None)

    @contextmanager
    def timing_words(self, wanted: bool) -> Iterator[WordTiming]:
        timing = WordTiming()
        self._this_thread.timing = timing if wanted else None
        try:
            yield timing
        finally:
            self._this_thread.timing = None
            self._this_thread.encoded = None

    def encode(self, features: numpy.ndarray) -> ctranslate2.StorageView:
        """Encode one window, one window at a time however many decodes run: an encoder pass holds its
        attention scores for a moment (tiny.en: 76-93 MB, measured in issue 10), and two passes at once put
        both on the worker's peak; the other decodes go on decoding meanwhile. Two threads decoding eight
        244 s chunks, three runs each: peak 350-373 -> 295-329 MB above the loaded model, wall time 86-89 s
        either way; bench/transcribe.py, lazyd default: peak -49 to -89 MB, realtime factor -3 to -4%, inside
        the spread of its rounds."""
        with self._encoding:
            self._this_thread.encoded = encoded = super().encode(features)
        return encoded

    def _split_segments_by_timestamps(self, tokenizer: Tokenizer, tokens: list[int], time_offset: float,
                                      segment_size: int, segment_duration: float, seek: int) -> Any:
        segments, next_seek, single_timestamp_ending = super()._split_segments_by_timestamps(
            tokenizer=tokenizer, tokens=tokens, time_offset=time_offset, segment_size=segment_size,
            segment_duration=segment_duration, seek=seek)
        encoded = getattr(self._this_thread, "encoded", None)
        if self.timing is not None and segments and encoded is not None:
            self.timing.align(self, segments, tokenizer, encoded, segment_size)
        return segments, next_seek, single_timestamp_ending


def _key(seek: int, tokens: list[int]) -> tuple[int, tuple[int, ...]]:
    return seek, tuple(tokens)
