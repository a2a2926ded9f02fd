"""Issue 17, finding 8: the database, recordings and key are the daemon's alone, whatever the umask it was
started under; an older install's world-readable files are made private at start-up, and it says so."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from lazyd.daemon import Daemon
from lazyd.registry import load_registry
from lazyd.store import Store, sqlite_files
from pipeline_helpers import tone_sequence, upload


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The common 022: without explicit modes every new file would be readable by every local user."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def daemon_files(data: Path) -> list[Path]:
    return [data, *(path for path in data.rglob("*") if "models" not in path.parts)]


@pytest.fixture
def config(permissive_umask, make_config, database_url):
    """Set before the client fixture starts the daemon."""
    return make_config(database_url)


async def test_a_new_install_keeps_its_database_recordings_and_key_private(config, client, accounts, database_url,
                                                                           tmp_path):
    headers = await accounts.headers("alice", can_interact=True)
    response = await upload(client, headers, tone_sequence(tmp_path / "talk.wav", [300, 400] * 6))
    assert response.status == 200, await response.text()
    data = config.data_path
    recordings = list(config.audio_path.iterdir())
    assert len(recordings) == 1 and (data / "secrets" / "jwt.key").exists()
    if not database_url:
        assert all(path.exists() for path in sqlite_files(data / "lazyd.sqlite3")[:3])  # file, -wal, -shm
    assert {path.name: oct(mode(path)) for path in daemon_files(data) if mode(path) & 0o077} == {}


async def test_an_older_install_readable_by_others_is_made_private_at_start_and_says_so(
        permissive_umask, make_config, caplog):
    config = make_config()
    data = config.data_path
    store = await Store.open(config.database_url)
    await store.close()
    config.audio_path.mkdir()
    (config.audio_path / "old.wav").write_bytes(b"RIFF")
    (data / "secrets").mkdir()
    (data / "secrets" / "jwt.key").write_text("an old key\n")
    for path in daemon_files(data):
        path.chmod(0o755 if path.is_dir() else 0o644)
    elsewhere = data / "models"  # not the daemon's secret: left as it is
    elsewhere.mkdir(mode=0o755)
    with caplog.at_level(logging.WARNING, logger="lazyd.daemon"):
        async with Daemon(config, load_registry()):
            pass
    assert {path.name: oct(mode(path)) for path in daemon_files(data) if mode(path) & 0o077} == {}
    assert mode(config.audio_path / "old.wav") == 0o600 and mode(config.audio_path) == 0o700
    assert mode(elsewhere) == 0o755
    [warning] = [record.getMessage() for record in caplog.records if "private now" in record.getMessage()]
    assert "could be read by other users" in warning and str(data) in warning
