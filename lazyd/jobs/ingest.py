"""Taking in a recording: stream it to disk, hash it, probe it, plan its chunks, queue the job.

The bytes go to disk in bounded pieces (never the whole file in memory), writes and probing run in
threads, and a rejected file leaves nothing behind: no row, no file.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..audio import AudioError, AudioInfo, plan_chunks, probe
from ..config import Config, InboxConfig
from ..files import create_private, make_private_dir, remove_files
from ..store import Transcription
from .states import JobStates, Quota

WRITE_BATCH = 1024 * 1024


class DurationOutOfRange(AudioError):
    """Readable audio, but shorter or longer than the configured limits."""


class UploadTooLarge(Exception):
    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"The file is larger than the {limit_bytes // (1024 * 1024)} MiB upload limit")


@dataclass(frozen=True)
class StoredFile:
    path: Path
    sha256: str
    size: int
    filename: str


async def store_stream(read: Callable[[], Awaitable[bytes]], directory: Path, filename: str,
                       max_bytes: int) -> StoredFile:
    """Write what ``read`` yields (until it yields ``b""``) to a new file in ``directory``, hashing it."""
    path = await asyncio.to_thread(_new_audio_path, directory, filename)
    digest, size = hashlib.sha256(), 0
    stream = await asyncio.to_thread(create_private, path)
    try:
        pending = bytearray()
        while piece := await read():
            size += len(piece)
            if size > max_bytes:
                raise UploadTooLarge(max_bytes)
            digest.update(piece)
            pending += piece
            if len(pending) >= WRITE_BATCH:
                await asyncio.to_thread(stream.write, bytes(pending))
                pending.clear()
        await asyncio.to_thread(_finish, stream, bytes(pending))
    except BaseException:
        await asyncio.to_thread(_discard, stream, path)
        raise
    return StoredFile(path, digest.hexdigest(), size, filename)


class NotARegularFile(OSError):
    """What lies under a name is a symbolic link, a folder, a device or a FIFO: never read through it."""


def copy_file(source: Path, directory: Path, max_bytes: int) -> StoredFile:
    """Copy ``source`` into ``directory`` under a new name, hashing it on the way. Blocking: use a thread.

    The source is opened once, without following a symbolic link, and checked and read through that one
    descriptor: a name swapped for a link (or anything but a regular file) between a listing and the copy
    is refused, and the size checked is the size of what is read.
    """
    with _open_regular_file(source) as reader:
        if (size := os.fstat(reader.fileno()).st_size) > max_bytes:
            raise UploadTooLarge(max_bytes)
        path = _new_audio_path(directory, source.name)
        digest, size = hashlib.sha256(), 0
        try:
            with create_private(path) as writer:
                while piece := reader.read(WRITE_BATCH):
                    size += len(piece)
                    if size > max_bytes:  # it grew after the check
                        raise UploadTooLarge(max_bytes)
                    digest.update(piece)
                    writer.write(piece)
                _durable(writer)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    return StoredFile(path, digest.hexdigest(), size, source.name)


def _open_regular_file(path: Path) -> Any:
    """``path`` opened for reading if it is a regular file itself (not a link to one).

    ``O_NONBLOCK`` keeps a FIFO put in its place from blocking the open until a writer appears.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise NotARegularFile(errno.ELOOP, "it is a symbolic link, which the inbox does not follow",
                                  str(path)) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotARegularFile(errno.EINVAL, "it is not a regular file", str(path))
    return os.fdopen(fd, "rb")


def _new_audio_path(directory: Path, filename: str) -> Path:
    """A fresh, unguessable name in ``directory`` (created private), keeping a plain extension."""
    make_private_dir(directory)
    return directory / f"{secrets.token_hex(12)}{_safe_suffix(filename)}"


def _durable(stream: Any) -> None:
    """On disk before the job that points at it is committed."""
    stream.flush()
    os.fsync(stream.fileno())


def _finish(stream: Any, tail: bytes) -> None:
    with stream:
        stream.write(tail)
        _durable(stream)


def _discard(stream: Any, path: Path) -> None:
    stream.close()
    path.unlink(missing_ok=True)


def _safe_suffix(filename: str) -> str:
    """The original extension if it is a plain one (for humans looking at the data directory)."""
    suffix = Path(filename).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


@dataclass(frozen=True)
class Inspection:
    info: AudioInfo
    plan: list[tuple[float, float]]


def inspect(path: Path, config: Config, parallel: int, enforce_limits: bool = True) -> Inspection:
    """Probe and check the limits, then plan the chunks for ``parallel`` decodes at once. Blocking: run it
    in a thread."""
    info = probe(path)
    limits = config.limits
    too_short, too_long = info.duration < limits.min_audio_secs, info.duration > limits.max_audio_secs
    if enforce_limits and (too_short or too_long):
        raise DurationOutOfRange(f"Audio duration must be between {limits.min_audio_secs:g} and "
                         f"{limits.max_audio_secs:g} seconds. Provided file is {info.duration:.2f} seconds long.")
    settings = config.transcription
    return Inspection(info, plan_chunks(path, info.duration, settings.chunk_secs, settings.cut_window_secs,
                                        parallel))


def upload_quota(config: Config) -> Quota:
    """An interactive upload: the active-job limit, and room made among uploads and counted inboxes' jobs.

    Made once at start-up: resolving the inboxes' paths touches the file system (perhaps a slow share).
    """
    limits = config.limits
    return Quota(limits.active_jobs_per_user, limits.max_transcriptions_per_user, _counted_inboxes(config))


def inbox_quota(config: Config, spec: InboxConfig) -> Quota:
    """A file from a watched folder waits its turn, and makes room only when its inbox has ``quota_applies``."""
    keep = config.limits.max_transcriptions_per_user if spec.quota_applies else None
    return Quota(None, keep, _counted_inboxes(config))


def _counted_inboxes(config: Config) -> frozenset[str]:
    return frozenset(str(spec.folder) for spec in config.inbox if spec.quota_applies)


_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
MAX_NAME_CHARS = 512


def display_name(filename: str) -> str:
    """The recording's name as a job keeps and shows it: without control characters (a NUL is refused by
    PostgreSQL and breaks every client that prints it; a newline would forge log and listing lines) and
    at most :data:`MAX_NAME_CHARS` long."""
    return _CONTROL_CHARACTERS.sub("", filename)[:MAX_NAME_CHARS] or "upload"


async def queue_file(states: JobStates, config: Config, stored: StoredFile, *, creator_id: int, quota: Quota,
                     source: str, options: dict[str, Any], parallel: int) -> Transcription:
    """Check the stored file and queue it; on any refusal the file is removed and the error re-raised."""
    try:
        checked = await asyncio.to_thread(inspect, stored.path, config, parallel)
        job, removed = await states.enqueue(
            creator_id, quota, audio_len_secs=checked.info.duration,
            chunk_size_secs=config.transcription.chunk_secs, chunk_plan=[list(span) for span in checked.plan],
            source=source, filename=display_name(stored.filename), audio_path=str(stored.path),
            audio_sha256=stored.sha256, audio_size=stored.size, options=options)
    except BaseException:
        await asyncio.to_thread(stored.path.unlink, True)
        raise
    await remove_files(removed)
    return job
