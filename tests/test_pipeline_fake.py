"""The scheduler and worker processes, driven by the FAKE tone backend (tests/fake_backend.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from conftest import fake_sections
from lazyd.store import Transcription
from lazyd.web import create_app
from pipeline_helpers import TONES, chunk_texts, expected_text, tone_sequence, upload, wait_for_state


@pytest.fixture
def control(tmp_path: Path) -> Path:
    return tmp_path / "fake" / "control.json"


@pytest.fixture
async def client(database_url, make_config, control, aiohttp_client):
    """The daemon with its scheduler running the FAKE backend (replaces conftest's API-only client)."""
    return await aiohttp_client(create_app(make_config(database_url, fake_sections(control))))


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


async def test_hook_lazyd_transcription_finished(database_url, make_config, control, aiohttp_client, tmp_path):
    import finished_recorder

    sections = fake_sections(control)
    sections["plugins"] = {"modules": ("fake_backend", "finished_recorder")}
    client = await aiohttp_client(create_app(make_config(database_url, sections)))
    from conftest import Accounts

    headers = await Accounts(client).headers("alice", can_interact=True)
    finished_recorder.FINISHED.clear()
    body = await (await upload(client, headers, tone_sequence(tmp_path / "a.wav", TONES[:6]))).json()
    await wait_for_state(client, headers, body["task_id"], ("completed",))
    for _ in range(50):
        if finished_recorder.FINISHED:
            break
        await asyncio.sleep(0.05)
    [call] = finished_recorder.FINISHED
    assert (call["id"], call["current_state"]) == (body["task_id"], "completed")
    assert call["description"].startswith("tone300")
