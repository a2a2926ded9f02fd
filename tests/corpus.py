"""The shared real-speech corpus (../shared/corpus): never copied into the repository, skipped when absent."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

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
