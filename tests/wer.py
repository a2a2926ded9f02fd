"""Word error rate, with the normalisation the shared corpus README prescribes; no dependencies.

Normalisation: lowercase, hyphens to spaces, drop apostrophes, delete other punctuation and symbols (so
"U.S." becomes "us"), collapse whitespace. No number or abbreviation mapping: "1961" and "nineteen
sixty-one" differ.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_APOSTROPHES = re.compile(r"['\u2018\u2019\u02bc]")
_HYPHENS = re.compile(r"[-\u2010\u2011\u2012\u2013\u2014]")


def normalise(text: str) -> list[str]:
    """The words of ``text`` after the corpus normalisation."""
    text = _HYPHENS.sub(" ", _APOSTROPHES.sub("", text.lower()))
    kept = "".join(char for char in text if not unicodedata.category(char).startswith(("P", "S")))
    return kept.split()


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Levenshtein distance between two word sequences (substitutions, deletions, insertions)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        current = [i]
        for j, hyp_word in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edits, reference word count) after normalisation; sum both over files for a corpus WER."""
    ref_words = normalise(reference)
    return edit_distance(ref_words, normalise(hypothesis)), len(ref_words)


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference``; may exceed 1 with many insertions."""
    edits, words = word_errors(reference, hypothesis)
    if words == 0:
        return 0.0 if edits == 0 else float("inf")
    return edits / words
