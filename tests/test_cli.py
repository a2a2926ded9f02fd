"""The `lazyd` command: user management on the same store as a running daemon, and a clean serve/stop."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import numpy
import pytest

from lazyd import __version__ as LAZYD_VERSION

PASSWORD = "Correct_horse1"


def lazyd(*args: str, data_dir: Path, stdin: str | None = None, env: dict | None = None,
          ) -> subprocess.CompletedProcess:
    environment = {**os.environ, "LAZYD_AUTH__BCRYPT_ROUNDS": "4", **(env or {})}
    return subprocess.run([sys.executable, "-m", "lazyd", *args, "--data-dir", str(data_dir)], input=stdin,
                          capture_output=True, text=True, env=environment, timeout=60)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, int]]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "lazyd", "serve", "--port", str(port)],
                               env={**os.environ, "LAZYD_DATA_DIR": str(tmp_path),
                                    "LAZYD_AUTH__BCRYPT_ROUNDS": "4"},
                               stderr=subprocess.PIPE, text=True)
    _wait_for_log(process, "listening on")
    yield process, port
    if process.poll() is None:
        process.kill()
        process.wait()
    process.stderr.close()


def _wait_for_log(process: subprocess.Popen, text: str, timeout_s: float = 30) -> str:
    deadline, seen = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        seen += line
        if text in line:
            return line
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"{text!r} never appeared in the daemon's log:\n{seen}")


def test_user_add_list_and_set_work_on_one_store(tmp_path):
    added = lazyd("user", "add", "alice", "--admin", "--can-interact", "--password-stdin",
                  data_dir=tmp_path, stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert "created admin alice" in added.stdout
    changed = lazyd("user", "set", "alice", "--blocked", "--no-can-interact", "--role", "user", data_dir=tmp_path)
    assert changed.returncode == 0, changed.stderr
    listing = lazyd("user", "list", data_dir=tmp_path)
    assert re.search(r"\d+\s+alice\s+user\s+no\s+no", listing.stdout), listing.stdout


def test_the_data_dir_can_come_from_the_environment(tmp_path):
    environment = {**os.environ, "LAZYD_DATA_DIR": str(tmp_path), "LAZYD_AUTH__BCRYPT_ROUNDS": "4"}
    run = subprocess.run([sys.executable, "-m", "lazyd", "user", "add", "alice", "--password-stdin"],
                         input=PASSWORD, capture_output=True, text=True, env=environment, timeout=60)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "lazyd.sqlite3").exists()


@pytest.mark.parametrize("args, stdin, message", [
    (("user", "add", "al1ce", "--password-stdin"), PASSWORD, "Latin letters only"),
    (("user", "add", "alice", "--password-stdin"), "short", "Password must be"),
    (("user", "add", "alice"), "", "pass --password-stdin"),
    (("user", "set", "nobody", "--blocked"), None, "no user named 'nobody'"),
    (("user", "set", "alice"), None, "nothing to change"),
])
def test_user_commands_fail_clearly(tmp_path, args, stdin, message):
    result = lazyd(*args, data_dir=tmp_path, stdin=stdin)
    assert result.returncode == 1
    assert message in result.stderr


def test_adding_an_existing_user_fails(tmp_path):
    lazyd("user", "add", "alice", "--password-stdin", data_dir=tmp_path, stdin=PASSWORD)
    again = lazyd("user", "add", "alice", "--password-stdin", data_dir=tmp_path, stdin=PASSWORD)
    assert again.returncode == 1 and "already exists" in again.stderr


def test_serve_logs_where_it_listens_and_stops_on_sigterm(tmp_path):
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "lazyd", "serve", "--port", str(port),
                                "--data-dir", str(tmp_path)], stderr=subprocess.PIPE, text=True)
    line = _wait_for_log(process, "listening on")
    assert f"http://127.0.0.1:{port}" in line and "sqlite:///" in line and str(tmp_path) in line
    base = f"http://127.0.0.1:{port}"
    for path in ("/auth/patch?user_id=1&secret_admin_token=hunter2-admin", "/ws?token=hunter2.jwt.token",
                 "/worker/transcription_status?secret_worker_token=hunter2-worker"):
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(base + path, timeout=10)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    with process.stderr:
        log = process.stderr.read()
    assert "Traceback" not in log
    assert 'GET /auth/patch?user_id=1&secret_admin_token=*** -> 405' in log
    assert "/ws?token=*** " in log and "secret_worker_token=*** " in log
    assert "hunter2" not in log, "a secret reached the log"


def test_serve_runs_under_a_private_umask(daemon):
    """Files a plugin or a worker creates are private too (issue 17, finding 8)."""
    process, _port = daemon
    status = Path(f"/proc/{process.pid}/status").read_text()
    assert "Umask:\t0077" in status


async def test_a_user_added_while_the_daemon_runs_can_log_in(daemon, tmp_path):
    process, port = daemon
    added = lazyd("user", "add", "alice", "--password-stdin", data_dir=tmp_path, stdin=PASSWORD)
    assert added.returncode == 0, added.stderr
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}/auth/login"
        async with session.post(url, json={"username": "alice", "password": PASSWORD}) as response:
            assert response.status == 200
    blocked = lazyd("user", "set", "alice", "--blocked", data_dir=tmp_path)
    assert blocked.returncode == 0
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"username": "alice", "password": PASSWORD}) as response:
            assert response.status == 401
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=15) == 0


def test_serve_refuses_a_port_in_use(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = lazyd("serve", "--port", str(port), data_dir=tmp_path)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def _fake_env(tmp_path: Path) -> dict[str, str]:
    control = tmp_path / "fake" / "control.json"
    control.parent.mkdir(parents=True, exist_ok=True)
    control.write_text("{}")
    tests_dir = str(Path(__file__).resolve().parent)
    return {"LAZYD_PLUGINS__MODULES": "fake_backend", "LAZYD_TRANSCRIPTION__BACKEND": "fake",
            "LAZYD_TRANSCRIPTION__MODEL": str(control), "LAZYD_TRANSCRIPTION__CHUNK_SECS": "4",
            "LAZYD_TRANSCRIPTION__CUT_WINDOW_SECS": "0.5",
            "PYTHONPATH": os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")])}


def test_plugins_lists_each_backend_its_devices_and_the_choice(tmp_path):
    result = lazyd("plugins", data_dir=tmp_path, env=_fake_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "faster-whisper (lazyd-faster-whisper 0.1.0): backends faster-whisper; exporters none" in result.stdout
    assert "fake_backend (module from [plugins] modules): backends fake; exporters none" in result.stdout
    assert (f"lazyd.plugins.subtitles (built into lazyd {LAZYD_VERSION}): backends none; exporters srt, vtt"
            in result.stdout)
    assert re.search(r"faster-whisper\n\s+cuda\s+no\s+ctranslate2 sees 0 CUDA devices", result.stdout)
    assert "chosen: fake on cpu (named in the configuration)" in result.stdout


def test_transcribe_runs_the_pipeline_without_a_server(tmp_path):
    from media import tone, write_audio

    audio = write_audio(tmp_path / "tones.wav", numpy.concatenate([tone(f, 1.0) for f in (300, 500, 700, 900,
                                                                                          1100, 1300)]))
    result = lazyd("transcribe", str(audio), data_dir=tmp_path / "data", env=_fake_env(tmp_path))
    assert result.returncode == 0, result.stderr
    chunks = result.stdout.strip().split("\n\n")
    assert " ".join(chunks).split() == ["tone300", "tone500", "tone700", "tone900", "tone1100", "tone1300"]
    assert len(chunks) == 2
    assert audio.exists()


def test_transcribe_of_real_speech_with_the_bundled_model(tmp_path, speech_cache):
    from speech import joined_speech_file
    from wer import wer

    sentences = ["The first law of thermodynamics says that energy is conserved.",
                 "A heat engine turns thermal energy into mechanical work."]
    text = " ".join(sentences)
    audio = joined_speech_file(speech_cache, sentences, pause_secs=0.7)
    result = lazyd("transcribe", str(audio), data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert wer(text, result.stdout) <= 0.1


def test_transcribe_of_a_non_audio_file_fails_clearly(tmp_path):
    notes = tmp_path / "notes.mp3"
    notes.write_text("not audio")
    result = lazyd("transcribe", str(notes), data_dir=tmp_path, env=_fake_env(tmp_path))
    assert result.returncode == 1
    assert "notes.mp3: not an audio file" in result.stderr
