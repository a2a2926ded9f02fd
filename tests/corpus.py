"""The shared real-speech corpus (../shared/corpus): never copied into the repository, skipped when absent."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
MISSING_REASON = f"the real-speech corpus is not at {CORPUS} (it lives outside the repository)"


def available() -> bool:
    return (CORPUS / "references.tsv").exists()


def rows() -> Iterator[dict[str, str]]:
    """Each recording: ``filename``, ``duration_s``, ``reference``, ``source``, ``licence``."""
    with open(CORPUS / "references.tsv", newline="", encoding="utf-8") as table:
        yield from csv.DictReader(table, delimiter="\t", quoting=csv.QUOTE_NONE)


def references() -> dict[str, str]:
    return {row["filename"]: row["reference"] for row in rows()}


def joined(gap_secs: float) -> tuple[Any, str]:
    """Every recording, in references.tsv order, decoded to 16 kHz mono and joined with ``gap_secs`` of
    silence between; and their references joined likewise."""
    import numpy as np

    from lazyd.audio import SAMPLE_RATE, decode_window, probe

    pieces, references = [], []
    gap = np.zeros(int(gap_secs * SAMPLE_RATE), np.float32)
    for row in rows():
        path = CORPUS / row["filename"]
        samples = decode_window(path, 0.0, probe(path).duration + 1.0)
        pieces += [gap, samples] if pieces else [samples]
        references.append(row["reference"].strip())
    return np.concatenate(pieces), " ".join(references)
