"""``lazyd backup`` and ``lazyd restore`` (issue 13): a backup taken while the daemon runs, restored into a
fresh data directory, serves the same accounts, logins, keys, transcriptions and exports."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from pathlib import Path

import pytest

from conftest import PASSWORD, Accounts, fake_sections
from lazyd.web import create_app
from pipeline_helpers import TONES, tone_sequence, upload, wait_for_state


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite: its online backup is what lazyd does itself (a PostgreSQL store is dumped with pg_dump)."""
    return f"sqlite:///{tmp_path / 'first' / 'lazyd.sqlite3'}"


async def lazyd(command: str, path: Path, data_dir: Path, database_url: str, audio_dir: str = "") -> tuple[int, str]:
    """``lazyd <command> <path>`` as a separate process on the given data directory and store."""
    env = {**{name: value for name, value in os.environ.items() if not name.startswith("LAZYD_")},
           "LAZYD_DATA_DIR": str(data_dir), "LAZYD_DATABASE__URL": database_url, "LAZYD_AUDIO_DIR": audio_dir}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "lazyd", command, str(path), env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode, out.decode()


async def what_it_serves(client, headers: dict[str, str], key: str, job_id: int) -> dict:
    """Everything a user would compare: the account, the list, the transcript and an export."""
    by_key = {"Authorization": f"Bearer {key}"}
    return {
        "me": await (await client.get("/auth/info", headers=headers)).json(),
        "me by key": await (await client.get("/auth/info", headers=by_key)).json(),
        "list": await (await client.get("/transcriptions", headers=headers)).json(),
        "chunks": await (await client.get(f"/transcript?task_id={job_id}", headers=headers)).json(),
        "export": await (await client.get(f"/transcript/export?task_id={job_id}&format=srt", headers=by_key)).text(),
    }


@pytest.mark.parametrize("audio_elsewhere", [False, True], ids=["audio in the data directory", "audio_dir"])
async def test_a_backup_of_a_running_daemon_restores_into_a_fresh_directory_and_serves_the_same_data(
        aiohttp_client, make_config, database_url, tmp_path, audio_elsewhere):
    audio_dirs = (str(tmp_path / "mount-1" / "audio"), str(tmp_path / "mount-2" / "audio")) if audio_elsewhere \
        else ("", "")
    config = dataclasses.replace(make_config(database_url, fake_sections(tmp_path / "fake" / "control.json")),
                                 audio_dir=audio_dirs[0])
    client = await aiohttp_client(create_app(config))
    headers = await Accounts(client).headers("alice", can_interact=True)
    key = (await (await client.post("/auth/keys", json={"name": "backup test"}, headers=headers)).json())["key"]
    job_id = (await (await upload(client, headers, tone_sequence(tmp_path / "t.wav", TONES))).json())["task_id"]
    await wait_for_state(client, headers, job_id, ("completed",))
    before = await what_it_serves(client, headers, key, job_id)

    status, printed = await lazyd("backup", tmp_path / "backup", config.data_path, database_url,  # while it runs
                                  audio_dirs[0])
    assert status == 0, printed
    await client.close()
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert manifest["database"] == "sqlite" and manifest["data_dir"] == str(config.data_path)

    fresh = tmp_path / "second"
    fresh_url = f"sqlite:///{fresh / 'lazyd.sqlite3'}"
    status, printed = await lazyd("restore", tmp_path / "backup", fresh, fresh_url, audio_dirs[1])
    assert status == 0, printed
    assert "1 recording(s) now point into it" in printed
    restored = await aiohttp_client(create_app(dataclasses.replace(make_config(fresh_url), data_dir=str(fresh),
                                                                   audio_dir=audio_dirs[1])))
    assert await what_it_serves(restored, headers, key, job_id) == before, "the old token and key work too"
    login = await restored.post("/auth/login", json={"username": "alice", "password": PASSWORD})
    assert login.status == 200
    recordings = list(Path(audio_dirs[1] or fresh / "audio").rglob("*.*"))
    assert recordings and all(path.stat().st_mode & 0o077 == 0 for path in recordings)


async def test_a_restore_never_overwrites_a_store(aiohttp_client, make_config, database_url, tmp_path):
    config = make_config(database_url)
    client = await aiohttp_client(create_app(config))
    await Accounts(client).create("alice")
    assert (await lazyd("backup", tmp_path / "backup", config.data_path, database_url))[0] == 0
    await client.close()
    status, printed = await lazyd("restore", tmp_path / "backup", config.data_path, database_url)
    assert status == 1 and "restore into a data directory without a store" in printed
    status, printed = await lazyd("backup", tmp_path / "backup", config.data_path, database_url)
    assert status == 1 and "is not empty" in printed


async def test_a_folder_that_is_no_backup_is_refused(make_config, tmp_path):
    (tmp_path / "junk").mkdir()
    status, printed = await lazyd("restore", tmp_path / "junk", tmp_path / "data", f"sqlite:///{tmp_path / 'x.db'}")
    assert status == 1 and "is not a lazyd backup" in printed
