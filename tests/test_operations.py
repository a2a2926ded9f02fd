"""Running lazyd as a service (issue 13): what ``/health`` tells whom, ``lazyd status``."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from conftest import admin_health
from lazyd.web import create_app
from lazyd.web.keys import DAEMON

ADMIN_TOKEN = "operations-admin-token"


def paths_and_secrets(text: str, data_dir: Path) -> list[str]:
    """What a public answer must never hold: this run's data directory (the database, audio, secrets and
    models live in it or beside it), the virtual environment, absolute paths at all, process ids."""
    found = [marker for marker in (str(data_dir), str(Path.cwd()), "/tmp/", "/home/", "/root/", "sqlite:", "pid")
             if marker in text]
    return found


async def test_health_without_credentials_says_whether_it_works_and_nothing_about_where(client, config):
    response = await client.get("/health")
    assert response.status == 200
    body = await response.json()
    assert body["api"] is True and body["database"] is True
    assert body["backend"]["scheduler"] is False and body["backend"]["working"] is True
    assert paths_and_secrets(json.dumps(body), config.data_path) == []


async def test_an_admin_sees_the_database_url_and_the_host(client):
    body = await admin_health(client)
    assert body["database"]["url"] == client.app[DAEMON].store.describe()
    assert body["host"]["cores"] >= 1


async def test_another_user_sees_the_public_view_and_a_forged_token_is_refused(client, accounts):
    headers = await accounts.headers("alice")
    assert "host" not in await (await client.get("/health", headers=headers)).json()
    forged = await client.get("/health", headers={"Authorization": "Bearer not.a.token"})
    assert forged.status == 401
    wrong_admin_token = await client.get("/health", headers={"X-Admin-Token": "guess"})
    assert wrong_admin_token.status == 403


async def lazyd_status(config, port: int) -> str:
    """``lazyd status`` run as a separate process on ``config``'s data and database, for a daemon on ``port``."""
    env = {**{name: value for name, value in os.environ.items() if not name.startswith("LAZYD_")},
           "LAZYD_DATA_DIR": config.data_dir, "LAZYD_DATABASE__URL": config.database.url,
           "LAZYD_SERVER__PORT": str(port), "LAZYD_AUTH__ADMIN_TOKEN": config.auth.admin_token}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "lazyd", "status", env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_lazyd_status_prints_the_admins_details_on_the_command_line(aiohttp_client, make_config, database_url):
    config = make_config(database_url, admin_token=ADMIN_TOKEN)
    client = await aiohttp_client(create_app(config))
    printed = await lazyd_status(config, client.port)
    assert f"store: {client.app[DAEMON].store.describe()} (schema v" in printed
    assert f"daemon: answering at http://127.0.0.1:{client.port}, backend none" in printed


async def test_lazyd_status_says_when_no_daemon_answers(make_config, database_url, unused_tcp_port):
    printed = await lazyd_status(make_config(database_url), unused_tcp_port)
    assert f"daemon: not answering at http://127.0.0.1:{unused_tcp_port}" in printed
