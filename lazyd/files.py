"""File chores kept off the event loop, and keeping the daemon's own files private."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

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


PRIVATE_FILE_MODE = 0o600


def make_private_dir(path: Path) -> None:
    """Create ``path`` and every missing folder above it, each for the daemon's user alone (``mkdir(parents=
    True, mode=...)`` gives the mode to the last folder only, the others get the umask's)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)


def create_private(path: Path) -> BinaryIO:
    """A new file at ``path`` (it must not exist) for writing, readable by the daemon's user alone."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    return os.fdopen(fd, "wb")


def make_private(paths: Iterable[Path], recursive: Iterable[Path]) -> list[Path]:
    """Take group and other permissions off each of ``paths``, and off everything under ``recursive``;
    return what was changed. Blocking: use a thread.

    An install from before lazyd kept its files private has a world-readable database (password hashes,
    transcripts) and recordings: this closes them at start-up.
    """
    changed = []
    for path in [*paths, *(found for top in recursive for found in _tree(top))]:
        try:
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode) or not mode & 0o077:
                continue
            path.chmod(stat.S_IMODE(mode) & 0o700)
            changed.append(path)
        except FileNotFoundError:
            continue
    return changed


def _tree(top: Path) -> Iterable[Path]:
    if not top.is_dir():
        return
    yield top
    for folder, dirs, files in os.walk(top):
        for name in (*dirs, *files):
            yield Path(folder, name)
