"""`/transcript/export`, `GET /formats`, `lazyd export`, and a third-party exporter installed from examples/."""

from __future__ import annotations

import csv
import importlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import docx
import pytest

from conftest import Accounts
from lazyd.exporters import ExportOptions
from lazyd.store import Transcription, User
from lazyd.web import create_app
from lazyd.web.export_routes import STREAM_BATCH_BYTES
from test_transcriptions_api import make_job

REPO = Path(__file__).resolve().parents[1]


async def _alice_with_job(accounts, **job) -> tuple[dict, Transcription]:
    headers = await accounts.headers("alice")
    alice = await User.aget(User.username == "alice")
    return headers, await make_job(alice, **job)


async def test_the_seed_txt_export_joins_chunks_with_a_blank_line(client, accounts):
    headers, job = await _alice_with_job(accounts, state="completed", chunks=("first part.", "second part."))
    response = await client.post(f"/transcript/export?task_id={job.id}&format=txt", headers=headers)
    assert response.status == 200
    assert await response.read() == b"first part.\n\nsecond part."
    alice = await User.aget(User.username == "alice")
    assert response.headers["Content-Disposition"] == f'attachment; filename="{alice.id}.txt"'
    assert response.headers["Content-Type"].startswith("text/plain")


async def test_the_seed_doc_export_is_a_word_document(client, accounts):
    headers, job = await _alice_with_job(accounts, state="completed", chunks=("first part.", "second part."))
    response = await client.post(f"/transcript/export?task_id={job.id}&format=doc", headers=headers)
    assert response.status == 200
    assert response.headers["Content-Disposition"].endswith('.doc"')
    document = docx.Document(io.BytesIO(await response.read()))
    paragraphs = [p.text for p in document.paragraphs]
    assert paragraphs[-2:] == ["[00:00:00] first part.", "[00:00:10] second part."]


@pytest.mark.parametrize("name, media_type, suffix", [
    ("srt", "application/x-subrip", "srt"), ("vtt", "text/vtt", "vtt"), ("json", "application/json", "json"),
    ("md", "text/markdown", "md"), ("docx", "application/vnd.openxmlformats", "docx")])
async def test_every_format_is_served_with_its_media_type_and_the_recordings_name(client, accounts, name,
                                                                                media_type, suffix):
    headers, job = await _alice_with_job(accounts, state="completed", chunks=("a chunk.",),
                                         filename="Física 1.mp3")
    response = await client.get(f"/transcript/export?task_id={job.id}&format={name}", headers=headers)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith(media_type)
    disposition = response.headers["Content-Disposition"]
    assert f"filename*=UTF-8''F%C3%ADsica%201.{suffix}" in disposition
    assert f'filename="F_sica 1.{suffix}"' in disposition


async def test_chunks_an_external_worker_reported_without_timings_are_in_every_format(aiohttp_client, make_config,
                                                                                     database_url):
    client = await aiohttp_client(create_app(make_config(database_url, worker_token="w0rker-token")))
    headers, job = await _alice_with_job(Accounts(client), state="in_progress")
    url = "/worker/transcription_status?secret_worker_token=w0rker-token"
    for number, text in enumerate(["Heat flows from hot to cold.", "Entropy never decreases."]):
        response = await client.post(url, json={"transcription_id": job.id,
                                                "new_chunk": {"chunk_no": number, "text": text}})
        assert response.status == 200, await response.text()
    for name in ("docx", "srt", "vtt", "md", "json"):
        response = await client.get(f"/transcript/export?task_id={job.id}&format={name}", headers=headers)
        body = await response.read()
        lines = ([p.text for p in docx.Document(io.BytesIO(body)).paragraphs] if name == "docx"
                 else body.decode().splitlines())
        text = " ".join(" ".join(line for line in lines if "-->" not in line and not line.isdigit()).split())
        assert "Heat flows from hot to cold." in text and "Entropy never decreases." in text, name
    srt_text = await (await client.get(f"/transcript/export?task_id={job.id}&format=srt", headers=headers)).text()
    assert "00:00:10,000 --> " in srt_text  # the second chunk's text starts where its chunk does


async def test_export_options_come_from_the_query_and_bad_ones_are_422(client, accounts):
    headers, job = await _alice_with_job(accounts, state="completed", chunks=("first part.", "second part."))
    base = f"/transcript/export?task_id={job.id}"
    timed = await client.get(f"{base}&format=txt&timestamps=yes", headers=headers)
    assert await timed.text() == "[00:00:00] first part.\n[00:00:10] second part.\n"
    whole = await client.get(f"{base}&format=srt", headers=headers)
    assert (await whole.text()).count(" --> ") == 2
    short = await client.get(f"{base}&format=srt&max_cue_chars=10&max_cue_secs=1", headers=headers)
    assert short.status == 200 and (await short.text()).count(" --> ") == 4  # each segment split in two
    for query, loc in [("timestamps=maybe", "timestamps"), ("max_cue_chars=5", "max_cue_chars"),
                       ("max_cue_secs=0", "max_cue_secs"), ("max_cue_secs=x", "max_cue_secs")]:
        response = await client.get(f"{base}&format=srt&{query}", headers=headers)
        assert response.status == 422, query
        assert (await response.json())["detail"][0]["loc"] == ["query", loc]


async def test_a_long_export_is_streamed_and_equals_the_whole_rendering(client, accounts):
    from lazyd.jobs.transcripts import load_transcript
    from lazyd.web.keys import DAEMON
    from lazyd.store import TranscriptionChunk
    from lazyd.web.keys import REGISTRY

    headers, job = await _alice_with_job(accounts, state="completed")
    segments = [{"start": n * 2.0, "end": n * 2.0 + 1.5, "text": f"Sentence number {n} of a very long lecture."}
                for n in range(3000)]
    await TranscriptionChunk.acreate(transcription=job, chunk_no=0, start_secs=0.0, end_secs=6000.0,
                                     text=" ".join(segment["text"] for segment in segments), segments=segments)
    expected = client.app[REGISTRY].exporters.get("srt").render(await load_transcript(client.app[DAEMON].store, job), ExportOptions())
    assert len(expected) > 3 * STREAM_BATCH_BYTES
    response = await client.get(f"/transcript/export?task_id={job.id}&format=srt", headers=headers)
    assert response.status == 200
    assert response.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in response.headers
    assert await response.read() == expected


async def test_exporting_before_any_chunk_is_done_is_a_409_that_says_so(client, accounts):
    headers, job = await _alice_with_job(accounts, state="in_progress")
    response = await client.post(f"/transcript/export?task_id={job.id}&format=txt", headers=headers)
    assert response.status == 409
    assert "no finished chunk" in (await response.json())["detail"]


async def test_an_unknown_format_is_a_422_listing_the_known_ones(client, accounts):
    headers, job = await _alice_with_job(accounts, state="completed", chunks=("x",))
    response = await client.post(f"/transcript/export?task_id={job.id}&format=pdf", headers=headers)
    assert response.status == 422
    [error] = (await response.json())["detail"]
    assert error["loc"] == ["query", "format"] and "'srt'" in error["msg"] and "'doc'" in error["msg"]


async def test_another_users_export_is_404(client, accounts):
    bob = await accounts.create("bobby")
    theirs = await make_job(bob, "completed", ("private words",))
    headers = await accounts.headers("alice")
    response = await client.post(f"/transcript/export?task_id={theirs.id}&format=txt", headers=headers)
    assert response.status == 404
    assert "private" not in await response.text()


async def test_formats_lists_every_exporter_with_its_plugin(client):
    formats = {item["name"]: item for item in (await (await client.get("/formats")).json())["formats"]}
    assert set(formats) >= {"txt", "doc", "docx", "srt", "vtt", "json", "md"}
    assert formats["srt"]["plugin"] == "lazyd.plugins.subtitles" and formats["srt"]["suffix"] == "srt"
    assert formats["doc"]["media_type"] == formats["docx"]["media_type"]


def _lazyd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lazyd", *args], capture_output=True, timeout=120,
                          env={**os.environ, **(env or {})})


async def test_lazyd_export_writes_a_stored_transcription(tmp_path, accounts, client):
    from lazyd.web.keys import CONFIG

    alice = await accounts.create("alice")
    job = await make_job(alice, "completed", ("one more.", "two more."))
    data_dir = client.app[CONFIG].data_dir
    database = client.app[CONFIG].database_url
    env = {"LAZYD_DATA_DIR": data_dir, "LAZYD_DATABASE__URL": database}
    out = tmp_path / "lecture.srt"
    result = _lazyd("export", str(job.id), "--format", "srt", "-o", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert out.read_text().startswith("1\n00:00:00,000 --> ")
    printed = _lazyd("export", str(job.id), env=env)
    assert printed.stdout == b"one more.\n\ntwo more.\n"
    timed = _lazyd("export", str(job.id), "--timestamps", env=env)
    assert timed.stdout == b"[00:00:00] one more.\n[00:00:10] two more.\n"
    assert _lazyd("export", str(job.id), "--format", "vtt", env=env).stdout.count(b" --> ") == 2
    short = _lazyd("export", str(job.id), "--format", "vtt", "--max-cue-secs", "1", env=env)
    assert short.stdout.count(b" --> ") == 4
    missing = _lazyd("export", "999999", env=env)
    assert missing.returncode == 1 and b"no transcription with id 999999" in missing.stderr
    unknown = _lazyd("export", str(job.id), "--format", "pdf", env=env)
    assert unknown.returncode == 1 and b"unknown format 'pdf'" in unknown.stderr


# -- a third-party exporter ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def csv_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/lazyd-exporter-csv installed (with its entry point) into a directory of its own."""
    source = tmp_path_factory.mktemp("csv-plugin-source") / "lazyd-exporter-csv"
    shutil.copytree(REPO / "examples" / "lazyd-exporter-csv", source)  # building writes next to the sources
    target = tmp_path_factory.mktemp("csv-plugin")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True, timeout=300)
    return target


@pytest.fixture
def with_csv_plugin(csv_plugin: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(csv_plugin))
    importlib.invalidate_caches()
    return csv_plugin


async def test_an_installed_exporter_is_served_by_the_api(with_csv_plugin, aiohttp_client, make_config,
                                                          database_url):
    from conftest import Accounts

    client = await aiohttp_client(create_app(make_config(database_url)))
    accounts = Accounts(client)
    headers, job = await _alice_with_job(accounts, state="completed", chunks=("alpha, beta", "gamma"))
    formats = {item["name"]: item for item in (await (await client.get("/formats")).json())["formats"]}
    assert formats["csv"]["plugin"] == "csv"
    response = await client.get(f"/transcript/export?task_id={job.id}&format=csv", headers=headers)
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows == [["start", "end", "text"], ["0.00", "4.00", "alpha, beta"], ["10.00", "14.00", "gamma"]]


def test_an_installed_exporter_is_listed_by_lazyd_plugins(csv_plugin, tmp_path):
    env = {"PYTHONPATH": os.pathsep.join([str(csv_plugin), os.environ.get("PYTHONPATH", "")]),
           "LAZYD_DATA_DIR": str(tmp_path)}
    result = _lazyd("plugins", env=env)
    assert result.returncode == 0, result.stderr
    assert "csv (lazyd-exporter-csv 1.0.0): backends none; exporters csv" in result.stdout.decode()

