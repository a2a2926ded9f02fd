"""The scheduler and worker processes, driven by the FAKE tone backend (tests/fake_backend.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy
import pytest

from conftest import fake_sections
from lazyd.store import Transcription, TranscriptionChunk
from lazyd.web import create_app
from media import silence, tone, write_audio

TONES = [300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1200, 1300, 1400, 1500, 1600, 1700, 1800, 1900, 2000,
         2100, 2200]


def tone_sequence(path: Path, freqs: list[int]) -> Path:
    """One second per frequency, with a short pause every eighth second where a chunk can be cut."""
    parts = []
    for n, freq in enumerate(freqs):
        parts.append(tone(freq, 0.9 if n % 8 == 7 else 1.0))
        if n % 8 == 7:
            parts.append(silence(0.1))
    return write_audio(path, numpy.concatenate(parts))


@pytest.fixture
def control(tmp_path: Path) -> Path:
    return tmp_path / "fake" / "control.json"


@pytest.fixture
async def client(database_url, make_config, control, aiohttp_client):
    """The daemon with its scheduler running the FAKE backend (replaces conftest's API-only client)."""
    return await aiohttp_client(create_app(make_config(database_url, fake_sections(control))))


async def upload(client, headers, path: Path, **fields: str):
    import aiohttp

    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("audiofile", path.read_bytes(), filename=path.name, content_type="audio/wav")
    return await client.post("/upload-audiofile", data=form, headers=headers)


async def wait_for_state(client, headers, job_id: int, states: tuple[str, ...], timeout: float = 60) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        info = await (await client.get(f"/transcript/info?transcript_id={job_id}", headers=headers)).json()
        if info["current_state"] in states:
            return info
        await asyncio.sleep(0.1)
    raise AssertionError(f"transcription {job_id} stayed {info['current_state']}, wanted {states}")


async def chunk_texts(job_id: int) -> list[str]:
    rows = await TranscriptionChunk._meta.database.list(
        TranscriptionChunk.select().where(TranscriptionChunk.transcription == job_id)
        .order_by(TranscriptionChunk.chunk_no))
    return [row.text for row in rows]


def expected_text(freqs: list[int]) -> str:
    return " ".join(f"tone{freq}" for freq in freqs)


async def test_an_upload_is_transcribed_chunk_by_chunk(client, accounts, tmp_path):
    headers = await accounts.headers("alice", can_interact=True)
    audio = tone_sequence(tmp_path / "lecture.wav", TONES)
    response = await upload(client, headers, audio)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["message"] == "File uploaded successfully" and body["file"] == "lecture.wav"
    info = await wait_for_state(client, headers, body["task_id"], ("completed",))
    job = await Transcription.aget_by_id(body["task_id"])
    assert len(job.chunk_plan) == 3
    assert " ".join(await chunk_texts(job.id)) == expected_text(TONES)
    assert info["description"].startswith("tone300 tone400")
