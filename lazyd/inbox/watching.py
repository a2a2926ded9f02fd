"""Noticing files: inotify through watchdog where it works, scans alone where it cannot (network shares)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import InboxConfig

log = logging.getLogger(__name__)

IGNORED_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".tmp", ".temp", ".swp", "~")
NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "afs")


def is_candidate(name: str) -> bool:
    """Hidden files and partial downloads are never taken."""
    lowered = name.lower()
    return not name.startswith(".") and not lowered.endswith(IGNORED_SUFFIXES)


def filesystem_type(path: Path) -> str:
    """The type of the file system ``path`` is on, from /proc/self/mounts ("" when unknown)."""
    best, kind = "", ""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return ""
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3 and str(path).startswith(fields[1]) and len(fields[1]) > len(best):
            best, kind = fields[1], fields[2]
    return kind


def listing(folder: Path) -> dict[str, tuple[int, float]]:
    """Size and modification time of every candidate file in ``folder``. Blocking: use a thread.

    Symbolic links are listed as what they are (their own size and time), so that taking one sets it aside
    with the reason instead of leaving it unexplained; their targets are never read.
    """
    files = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if (entry.is_file(follow_symlinks=False) or entry.is_symlink()) and is_candidate(entry.name):
                stat = entry.stat(follow_symlinks=False)
                files[entry.name] = (stat.st_size, stat.st_mtime)
    return files


def start_observer(spec: InboxConfig, loop: asyncio.AbstractEventLoop, poke: Callable[[], None]) -> tuple[Any, str]:
    """inotify through watchdog, unless told to poll or the folder is on a network file system.

    Returns the running observer (``None`` when polling) and how the folder is watched, in words.
    """
    polling = f"polling every {spec.scan_secs:g} s"
    if spec.watch == "poll":
        return None, polling
    if spec.watch == "auto" and (fs := filesystem_type(spec.folder)) in NETWORK_FILESYSTEMS:
        return None, f"{polling} ({fs} is a network file system: no inotify events)"
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers.inotify import InotifyObserver

    class Wake(FileSystemEventHandler):
        def on_any_event(self, event) -> None:
            loop.call_soon_threadsafe(poke)

    observer = InotifyObserver()
    observer.schedule(Wake(), str(spec.folder), recursive=False)
    try:
        observer.start()
    except OSError as error:  # the scans alone still see every file, only a little later
        if spec.watch == "inotify":
            log.warning("inbox %s: inotify was asked for but is unavailable (%s); polling instead", spec.folder,
                        error)
        return None, f"{polling} (inotify unavailable: {error.strerror})"
    return observer, "inotify"
