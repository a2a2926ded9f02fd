"""``lazyd backup DEST`` and ``lazyd restore SOURCE``: the store, the audio and the secrets, consistent and
whole, taken while the daemon runs.

A backup is a folder: ``lazyd.sqlite3`` (SQLite's online backup API: a consistent snapshot even while the
daemon writes), ``audio/``, ``secrets/`` (the token and API-key keys: without them every login and key
would stop working) and ``manifest.json``. The database is copied first and the audio after, so every
recording the snapshot refers to is in the copy. A PostgreSQL store is backed up with ``pg_dump`` (the
manifest and the command say how); the audio and secrets are copied all the same.

Restoring puts the files into the configured data directory, which must hold no store yet, and points the
transcriptions' audio at their new place (the store keeps absolute paths).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import peewee

from . import __version__
from .config import Config, mask_url_password
from .files import make_private_dir
from .store import Store, Transcription, sqlite_path

MANIFEST = "manifest.json"
DATABASE_COPY = "lazyd.sqlite3"
COPIED_FOLDERS = ("audio", "secrets")
"""The folders a backup holds, under these names wherever the configuration puts them (:func:`_folders`)."""
PG_DUMP_HINT = "pg_dump --format=custom --file=lazyd.pgdump '{url}'  (restore: pg_restore --dbname=... lazyd.pgdump)"


class BackupError(Exception):
    """A backup or restore that cannot be made; the message says why and nothing was changed."""


@dataclass(frozen=True)
class Manifest:
    lazyd_version: str
    created: str
    database: str
    """``sqlite`` (copied as ``lazyd.sqlite3``) or ``postgresql`` (not copied: see ``database_hint``)."""
    data_dir: str
    """The data directory it was taken from."""
    database_hint: str = ""
    audio_dir: str = ""
    """Where the recordings were (``audio_dir``; older backups: ``audio`` in ``data_dir``): restoring moves
    the stored paths from there to the new place."""


def _folders(config: Config) -> dict[str, Path]:
    """Where each of :data:`COPIED_FOLDERS` is for this configuration."""
    return {"audio": config.audio_path, "secrets": config.data_path / "secrets"}


def backup(config: Config, destination: Path) -> Manifest:
    if destination.exists() and any(destination.iterdir()):
        raise BackupError(f"{destination} is not empty: a backup goes into a new or empty folder")
    make_private_dir(destination)
    database_file = sqlite_path(config.database_url)
    if database_file is not None:
        _copy_sqlite(database_file, destination / DATABASE_COPY)
        database, hint = "sqlite", ""
    else:
        database, hint = "postgresql", PG_DUMP_HINT.format(url=mask_url_password(config.database_url))
    manifest = Manifest(__version__, _now(), database, str(config.data_path), hint, str(config.audio_path))
    for folder, place in _folders(config).items():
        if place.is_dir():
            shutil.copytree(place, destination / folder)
    (destination / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    return manifest


def _copy_sqlite(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent snapshot, whatever the daemon writes meanwhile."""
    if not source.is_file():
        raise BackupError(f"there is no store at {source}")
    with contextlib.closing(sqlite3.connect(source)) as live, contextlib.closing(sqlite3.connect(target)) as copy:
        live.backup(copy)
    target.chmod(0o600)


def read_manifest(source: Path) -> Manifest:
    try:
        return Manifest(**json.loads((source / MANIFEST).read_text()))
    except (OSError, ValueError, TypeError) as error:
        raise BackupError(f"{source} is not a lazyd backup ({MANIFEST}: {error})") from None


def restore_files(config: Config, source: Path) -> Manifest:
    """Copy the backup's files into the data directory; the store is checked and fixed by
    :func:`point_audio_here` next, once it can be opened."""
    manifest = read_manifest(source)
    database_file = sqlite_path(config.database_url)
    if manifest.database == "sqlite" and database_file is None:
        raise BackupError("this backup holds a SQLite store but lazyd is configured for PostgreSQL")
    if database_file is not None and database_file.exists():
        raise BackupError(f"{database_file} exists: restore into a data directory without a store")
    clashes = [str(place) for place in _folders(config).values() if place.exists()]
    if clashes:
        raise BackupError(f"{', '.join(clashes)} already exist: restore into an empty data directory")
    make_private_dir(config.data_path)
    if manifest.database == "sqlite":
        shutil.copy2(source / DATABASE_COPY, database_file)
        database_file.chmod(0o600)
    for folder, place in _folders(config).items():
        if (source / folder).is_dir():
            shutil.copytree(source / folder, place)
    return manifest


async def point_audio_here(store: Store, manifest: Manifest, config: Config) -> int:
    """Move the recordings' paths from the backed-up data directory to this one; how many were moved."""
    old = str(Path(manifest.audio_dir) if manifest.audio_dir else Path(manifest.data_dir) / "audio") + "/"
    new = str(config.audio_path) + "/"
    if old == new:
        return 0
    query = (Transcription.update(audio_path=peewee.fn.REPLACE(Transcription.audio_path, old, new))
             .where(Transcription.audio_path.startswith(old)))
    return await store.execute(query)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
