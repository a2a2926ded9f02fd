"""File chores kept off the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)


async def remove_files(paths: Iterable[str | Path]) -> int:
    """Delete each file that exists (in a thread); return how many were removed."""
    return await asyncio.to_thread(_remove_all, [Path(path) for path in paths if path])


def _remove_all(paths: list[Path]) -> int:
    removed = 0
    for path in paths:
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError:
            log.warning("could not remove %s", path, exc_info=True)
    return removed
