"""Words at a chunk cut: each chunk is decoded a little past both its cuts, and keeps what is its own.

A cut goes to the quietest moment near its nominal time, but the quietest moment in continuous speech can
be the closure of a consonant inside a word ("pla|ced"): decoded on their own, the chunk before hears
"play" and the chunk after hears nothing, or both hear the word. So every chunk is decoded with
``overlap`` seconds of audio beyond each of its cuts, where both neighbours hear the whole word:

- a chunk keeps the words whose middle lies before its end cut (the last chunk keeps everything);
- the chunk after starts right after the last word the chunk before kept: a word is its own when it
  starts no earlier than :data:`JITTER_SECS` before that word's end, unless it is that same word again
  (the two decodes time a word up to a few tenths of a second apart). Without that word (the chunk
  before heard nothing, or has no word times) the middle of each word or segment decides.

Each word is then in the transcript once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..backend import Segment, Word

NO_SPACE_BEFORE = tuple(",.;:!?%)]}'\u2019-")
"""How a word may start when it continues the one before (Whisper's "ill" "-disposed", "don" "'t")."""

JITTER_SECS = 0.15
"""How far apart two decodes may time the same word."""


@dataclass(frozen=True)
class Span:
    """What a chunk owns (``start``, ``end``) and what is decoded for it (``decode_start``, ``decode_end``)."""

    start: float
    end: float
    decode_start: float
    decode_end: float
    after: Word | None = None
    """The last word the chunk before kept, when it has one."""

    @classmethod
    def around(cls, start: float, end: float, duration: float, overlap: float, after: Word | None = None) -> Span:
        return cls(start, end, max(0.0, start - overlap), min(duration, end + overlap), after)

    def _before_end(self, at: float) -> bool:
        return at < self.end or self.end >= self.decode_end

    def owns_word(self, word: Word) -> bool:
        if not self._before_end(middle(word)):
            return False
        if self.after is None:
            return middle(word) >= self.start
        again = word.start < self.after.end and normalised(word.word) == normalised(self.after.word)
        return word.start >= self.after.end - JITTER_SECS and not again

    def own_part(self, segment: Segment) -> Segment | None:
        """``segment`` (in recording time) as far as this chunk owns it; ``None`` if none of it."""
        if not segment.words:
            at = middle(segment)
            return segment if self.start <= at and self._before_end(at) else None
        words = tuple(word for word in segment.words if self.owns_word(word))
        if len(words) == len(segment.words):
            return segment
        if not words:
            return None
        return replace(segment, start=words[0].start, end=words[-1].end, text=joined(words), words=words)


def middle(timed: Word | Segment) -> float:
    return (timed.start + timed.end) / 2


def joined(words: tuple[Word, ...]) -> str:
    """The text of a run of words, each given without its leading space."""
    text = ""
    for word in words:
        text += word.word if not text or word.word.startswith(NO_SPACE_BEFORE) else f" {word.word}"
    return text


def normalised(word: str) -> str:
    return "".join(char for char in word.lower() if char.isalnum())


def last_word(segments: list[Segment]) -> Word | None:
    return next((segment.words[-1] for segment in reversed(segments) if segment.words), None)

