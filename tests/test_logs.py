"""Logs (issue 13): one line per request and per job step, in text or JSON lines, and never a secret.

A real daemon process runs with every secret configured and is driven through every way a secret reaches
it: a password, access and refresh tokens, an API key, the admin, worker and metrics tokens in headers
and in query strings, the WebSocket's ``?token=``. Its whole log must hold none of them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from lazyd.logs import formatter, under_journald
from pipeline_helpers import tone_sequence

TESTS_DIR = Path(__file__).resolve().parent
PASSWORD = "Correct_horse1"
SECRETS = {
    "LAZYD_AUTH__JWT_SECRET": "jwt-secret-0123456789abcdef0123456789abcdef",
    "LAZYD_AUTH__API_KEY_SECRET": "api-key-secret-0123456789abcdef0123456789",
    "LAZYD_AUTH__ADMIN_TOKEN": "admin-token-never-logged",
    "LAZYD_AUTH__WORKER_TOKEN": "worker-token-never-logged",
    "LAZYD_AUTH__METRICS_TOKEN": "metrics-token-never-logged",
}


def daemon_env(tmp_path: Path, log_format: str) -> dict[str, str]:
    control = tmp_path / "fake" / "control.json"
    control.parent.mkdir(parents=True, exist_ok=True)
    control.write_text(json.dumps({"delay": 0.01}))
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("LAZYD_")}
    return {**inherited, **SECRETS, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), inherited.get("PYTHONPATH")])),
            "LAZYD_DATA_DIR": str(tmp_path / "data"), "LAZYD_PLUGINS__MODULES": "fake_backend",
            "LAZYD_TRANSCRIPTION__BACKEND": "fake", "LAZYD_TRANSCRIPTION__MODEL": str(control),
            "LAZYD_TRANSCRIPTION__CHUNK_SECS": "8", "LAZYD_LIMITS__MIN_AUDIO_SECS": "1",
            "LAZYD_SCHEDULER__POLL_SECS": "0.2", "LAZYD_AUTH__BCRYPT_ROUNDS": "4",
            "LAZYD_LOGGING__LEVEL": "debug", "LAZYD_LOGGING__FORMAT": log_format,
            "LAZYD_SCHEDULER__NODE_NAME": "lecture-hall-2"}


async def use_every_secret(base: str, tmp_path: Path) -> list[str]:
    """Drive the daemon through every secret; return the ones it handed out (tokens, the key)."""
    async with aiohttp.ClientSession(base) as http:
        async with http.post("/auth/login", json={"username": "alice", "password": PASSWORD}) as response:
            tokens = await response.json()
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        async with http.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}) as response:
            refreshed = await response.json()
        async with http.post("/auth/keys", json={"name": "logs"}, headers=bearer) as response:
            key = (await response.json())["key"]
        by_key = {"Authorization": f"Bearer {key}"}
        form = aiohttp.FormData()
        form.add_field("audiofile", tone_sequence(tmp_path / "t.wav", [300, 400, 500]).read_bytes(), filename="t.wav")
        async with http.post("/upload-audiofile", data=form, headers=by_key) as response:
            job_id = (await response.json())["task_id"]
        async with http.ws_connect(f"/ws?token={tokens['access_token']}") as ws:
            while (await ws.receive_json(timeout=30)).get("state") != "completed":
                pass
        admin, worker, metrics = (SECRETS[f"LAZYD_AUTH__{name}_TOKEN"] for name in ("ADMIN", "WORKER", "METRICS"))
        requests = [
            ("PATCH", f"/auth/patch?user_id=1&secret_admin_token={admin}", {}, {"can_interact": True}),
            ("GET", "/health", {"X-Admin-Token": admin}, None),
            ("POST", f"/worker/transcription_status?secret_worker_token={worker}", {}, {"transcription_id": job_id}),
            ("POST", "/worker/transcription_status", {"X-Worker-Token": worker}, {"transcription_id": job_id}),
            ("GET", "/metrics", {"Authorization": f"Bearer {metrics}", "X-Forwarded-For": "203.0.113.7"}, None),
            ("GET", f"/transcript?task_id={job_id}", by_key, None),
            ("GET", "/auth/info", {"Authorization": "Bearer forged.token.value"}, None),
        ]
        for method, path, headers, body in requests:
            async with http.request(method, path, headers=headers, json=body) as response:
                assert response.status < 500, await response.text()
    return [tokens["access_token"], tokens["refresh_token"], refreshed["access_token"], refreshed["refresh_token"],
            key, key.split("_", 2)[2], "forged.token.value"]  # lzd_<hex prefix>_<secret, which may hold _>


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_no_secret_reaches_the_log_and_each_request_and_job_step_has_its_line(tmp_path, unused_tcp_port,
                                                                                   log_format):
    env = daemon_env(tmp_path, log_format)
    subprocess.run([sys.executable, "-m", "lazyd", "user", "add", "alice", "--admin", "--can-interact",
                    "--password-stdin"], input=PASSWORD + "\n", env=env, check=True, capture_output=True, text=True)
    log_path = tmp_path / "daemon.log"
    with log_path.open("w") as log_file:
        daemon = subprocess.Popen([sys.executable, "-m", "lazyd", "serve", "--port", str(unused_tcp_port)], env=env,
                                  stdout=log_file, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{unused_tcp_port}"
        await wait_until_listening(base)
        handed_out = await use_every_secret(base, tmp_path)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    log = log_path.read_text()
    leaked = [secret for secret in [PASSWORD, *SECRETS.values(), *handed_out] if secret in log]
    assert leaked == [], f"secrets in the log: {leaked}"
    lines = log.splitlines()
    if log_format == "json":
        records = [json.loads(line) for line in lines]  # every line is one JSON object
        assert {record["node"] for record in records} == {"lecture-hall-2"}
        [login] = [r for r in records if r.get("route") == "/auth/login"]
        assert (login["method"], login["status"], login["user_id"]) == ("POST", 200, None)
        assert len(login["request_id"]) == 16 and login["duration_ms"] >= 0
        [by_key] = [r for r in records if r.get("route") == "/transcript"]
        assert (by_key["status"], by_key["user_id"], by_key["target"]) == (200, 1, "/transcript?task_id=1")
        [forged] = [r for r in records if r.get("route") == "/auth/info"]
        assert (forged["status"], forged["user_id"]) == (401, None)
        messages = [r["message"] for r in records]
    else:
        assert all(" [lecture-hall-2] " in line for line in lines if " INFO " in line)
        assert any(" POST /auth/login -> 200 in " in line and "route /auth/login, user None" in line for line in lines)
        assert any(" GET /transcript?task_id=1 -> 200 in " in line and "user 1," in line for line in lines)
        assert any("secret_admin_token=***" in line for line in lines)
        messages = lines
    for step in ("transcription 1: started (attempt 1)", "transcription 1: chunk 0 done", "transcription 1: completed"):
        assert any(step in message for message in messages), step


async def wait_until_listening(base: str, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout), aiohttp.ClientSession(base) as http:
        while True:
            try:
                async with http.get("/"):
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)


def test_under_journald_a_line_has_journalds_priority_and_no_time_of_its_own():
    record = logging.LogRecord("lazyd.jobs", logging.WARNING, __file__, 1, "transcription %d: attempt failed", (7,), None)
    assert formatter("text", journald=True).format(record) == "<4>WARNING lazyd.jobs: transcription 7: attempt failed"
    assert formatter("text", journald=False).format(record).endswith(" WARNING lazyd.jobs: transcription 7: attempt failed")
    assert json.loads(formatter("json", journald=True).format(record))["level"] == "warning"


def test_journald_is_recognised_by_the_stream_it_names():
    status = os.fstat(sys.stderr.fileno())
    assert under_journald({"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"})
    assert not under_journald({"JOURNAL_STREAM": "1:2"}) and not under_journald({})
