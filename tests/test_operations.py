"""Running lazyd as a service (issue 13): systemd notifications, what ``/health`` tells whom, ``lazyd status``,
``/metrics``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from datetime import timedelta

from conftest import Accounts, admin_health, fake_sections
from lazyd.store import Transcription, utcnow
from pipeline_helpers import TONES, tone_sequence, upload, wait_for_state
from lazyd.systemd import Notifier
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


# -- systemd's notifications ----------------------------------------------------------------------------------

class NotifySocket:
    """The datagram socket systemd would listen on (``$NOTIFY_SOCKET``); collects what the daemon says."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    async def until(self, key: str, timeout: float = 30) -> dict[str, str]:
        """The first message (from now or before) that sets ``key``."""
        async with asyncio.timeout(timeout):
            while not (found := [message for message in self.messages if key in message]):
                data = await asyncio.get_running_loop().sock_recv(self.sock, 4096)
                self.messages.append(dict(line.split("=", 1) for line in data.decode().splitlines()))
        return found[0]


async def test_systemd_hears_ready_status_watchdog_and_stopping(tmp_path, unused_tcp_port):
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {**{name: value for name, value in os.environ.items() if not name.startswith("LAZYD_")},
           "LAZYD_DATA_DIR": str(tmp_path / "data"), "LAZYD_SCHEDULER__ENABLED": "false",
           "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"}
    daemon = await asyncio.create_subprocess_exec(sys.executable, "-m", "lazyd", "serve", "--port", str(unused_tcp_port),
                                                  env=env, stdout=asyncio.subprocess.DEVNULL,
                                                  stderr=asyncio.subprocess.DEVNULL)
    try:
        ready = await notify.until("READY")
        async with aiohttp.ClientSession() as session:  # ready means listening, with the store open
            async with session.get(f"http://127.0.0.1:{unused_tcp_port}/") as response:
                assert await response.json() == {"api": True, "database": True}
        assert ready["STATUS"] == "0 queued, 0 transcribing" and ready["MAINPID"] == str(daemon.pid)
        await notify.until("WATCHDOG")  # every 0.2 s: half of WatchdogSec
        daemon.send_signal(signal.SIGTERM)
        assert (await notify.until("STOPPING"))["STOPPING"] == "1"
        assert await asyncio.wait_for(daemon.wait(), timeout=30) == 0
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()
        notify.sock.close()


def test_outside_systemd_the_notifier_does_nothing_and_a_watchdog_for_another_process_is_ignored():
    assert not Notifier({}).enabled
    Notifier({}).ready("fine")  # no socket: nothing to send to, nothing raised
    assert Notifier({"NOTIFY_SOCKET": "@lazyd", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}).watchdog_secs is None
    assert Notifier({"NOTIFY_SOCKET": "@lazyd"}).address == "\0lazyd"


# -- metrics ----------------------------------------------------------------------------------------------------

def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a Prometheus exposition, parsed by prometheus-client's own parser."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


async def scrape(client) -> dict[tuple[str, tuple], float]:
    response = await client.get("/metrics")
    assert response.status == 200 and response.content_type == "text/plain"
    return samples(await response.text())


@pytest.fixture
async def transcribing(aiohttp_client, make_config, database_url, tmp_path):
    """A daemon transcribing with the FAKE tone backend, and an uploader's headers."""
    client = await aiohttp_client(create_app(make_config(database_url, fake_sections(tmp_path / "fake" / "c.json"))))
    return client, await Accounts(client).headers("alice", can_interact=True)


async def test_metrics_change_when_a_job_runs(transcribing, tmp_path):
    client, headers = transcribing
    before = await scrape(client)
    assert before[("lazyd_jobs", (("state", "completed"),))] == 0
    async with client.ws_connect("/ws", headers=headers):
        assert (await scrape(client))[("lazyd_websocket_connections", ())] == 1
        job_id = (await (await upload(client, headers, tone_sequence(tmp_path / "t.wav", TONES))).json())["task_id"]
        await wait_for_state(client, headers, job_id, ("completed",))
    after = await scrape(client)
    fake = (("backend", "fake"), ("model", "c.json"))
    assert after[("lazyd_jobs", (("state", "completed"),))] == 1 and after[("lazyd_queue_depth", ())] == 0
    chunks = (await (await client.get(f"/transcript?task_id={job_id}", headers=headers)).json())["total"]
    assert after[("lazyd_audio_transcribed_seconds_total", fake)] == pytest.approx(len(TONES), abs=0.5)  # 1 s each
    assert after[("lazyd_chunk_decode_seconds_count", fake)] == chunks > 1
    assert after[("lazyd_realtime_factor", fake)] > 0
    assert after[("lazyd_model_load_seconds_count", fake)] == 1
    upload_ok = (("method", "POST"), ("route", "/upload-audiofile"), ("status", "200"))
    assert after[("lazyd_http_requests_total", upload_ok)] == 1
    assert after[("lazyd_http_request_duration_seconds_count", (("method", "POST"), ("route", "/upload-audiofile")))] == 1
    assert after[("lazyd_websocket_connections", ())] == 0


async def test_the_metrics_name_the_node(aiohttp_client, make_config, database_url):
    client = await aiohttp_client(create_app(make_config(database_url, {"scheduler": {"node_name": "gpu-box-2"}})))
    assert (await scrape(client))[("lazyd_node_info", (("node", "gpu-box-2"),))] == 1


async def test_the_queue_metrics_show_a_waiting_job_and_its_age(client, accounts, database_url):
    headers = await accounts.headers("alice", can_interact=True)
    me = await (await client.get("/auth/info", headers=headers)).json()
    await Transcription.acreate(creator=me["id"], audio_len_secs=30.0, chunk_size_secs=10.0, current_state="queued",
                                create_date=utcnow() - timedelta(seconds=90))
    found = await scrape(client)
    assert found[("lazyd_queue_depth", ())] == 1
    assert 90 <= found[("lazyd_queue_oldest_age_seconds", ())] < 120


async def test_an_unknown_path_is_counted_without_its_path(client):
    assert (await client.get("/no/such/thing")).status == 404
    found = await scrape(client)
    assert found[("lazyd_http_requests_total", (("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 1
    assert not any("/no/such/thing" in str(key) for key in found)


async def test_metrics_are_open_to_this_machine_and_take_the_token_from_elsewhere(aiohttp_client, make_config):
    proxied = {"X-Forwarded-For": "203.0.113.7"}
    closed = await aiohttp_client(create_app(make_config()))
    assert (await closed.get("/metrics", headers=proxied)).status == 403
    guarded = await aiohttp_client(create_app(make_config(metrics_token="scrape-me")))
    assert (await guarded.get("/metrics", headers=proxied)).status == 401
    wrong = await guarded.get("/metrics", headers={**proxied, "Authorization": "Bearer guess"})
    assert wrong.status == 401
    right = await guarded.get("/metrics", headers={**proxied, "Authorization": "Bearer scrape-me"})
    assert right.status == 200


async def test_sigterm_tells_open_websockets_the_server_is_going_away(tmp_path, unused_tcp_port):
    env = {**{name: value for name, value in os.environ.items() if not name.startswith("LAZYD_")},
           "LAZYD_DATA_DIR": str(tmp_path / "data"), "LAZYD_SCHEDULER__ENABLED": "false",
           "LAZYD_AUTH__BCRYPT_ROUNDS": "4"}
    added = await asyncio.create_subprocess_exec(sys.executable, "-m", "lazyd", "user", "add", "alice",
                                                 "--password-stdin", env=env, stdin=asyncio.subprocess.PIPE,
                                                 stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await added.communicate(b"Correct_horse1\n")
    daemon = await asyncio.create_subprocess_exec(sys.executable, "-m", "lazyd", "serve", "--port", str(unused_tcp_port),
                                                  env=env, stdout=asyncio.subprocess.DEVNULL,
                                                  stderr=asyncio.subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{unused_tcp_port}") as http:
            async with asyncio.timeout(30):
                while True:
                    try:
                        login = await http.post("/auth/login", json={"username": "alice", "password": "Correct_horse1"})
                        break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.1)
            token = (await login.json())["access_token"]
            async with http.ws_connect("/ws", headers={"Authorization": f"Bearer {token}"}) as ws:
                assert (await ws.receive_json())["type"] == "hello"
                daemon.send_signal(signal.SIGTERM)
                closing = await ws.receive(timeout=20)
                assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == aiohttp.WSCloseCode.GOING_AWAY
        assert await asyncio.wait_for(daemon.wait(), timeout=30) == 0
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()
