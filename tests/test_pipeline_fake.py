"""The scheduler and worker processes, driven by the FAKE tone backend (tests/fake_backend.py)."""

from __future__ import annotations

import asyncio
import json
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


async def test_chunks_decoded_past_their_cuts_keep_each_second_once(database_url, make_config, control,
                                                                   aiohttp_client, tmp_path):
    """With 2 s decoded beyond each cut, the chunks hear their neighbours' edges, yet each tone is in the
    transcript once, in the chunk that owns its time, and the segment times are the recording's."""
    sections = fake_sections(control)
    sections["transcription"]["cut_overlap_secs"] = 2.0
    client = await aiohttp_client(create_app(make_config(database_url, sections)))
    from conftest import Accounts

    headers = await Accounts(client).headers("alice", can_interact=True)
    body = await (await upload(client, headers, tone_sequence(tmp_path / "a.wav", TONES))).json()
    await wait_for_state(client, headers, body["task_id"], ("completed",))
    job = await Transcription.aget_by_id(body["task_id"])
    assert " ".join(await chunk_texts(job.id)) == expected_text(TONES)
    heard = [int(line.split()[1]) / 16_000 for line in control.with_name("calls.log").read_text().splitlines()]
    owned = [end - start for start, end in job.chunk_plan]
    assert heard == pytest.approx([owned[0] + 2, owned[1] + 4, owned[2] + 2], abs=0.01)
    response = await client.get(f"/transcript/segments?transcript_id={job.id}&size=100", headers=headers)
    segments = (await response.json())["segments"]
    for segment in segments:
        start, end = job.chunk_plan[segment["chunk_order"]]
        assert start - 0.01 <= (segment["start"] + segment["end"]) / 2 < end, (segment, job.chunk_plan)


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


async def test_the_options_of_an_upload_reach_the_backend_and_progress_is_reported(client, accounts, tmp_path,
                                                                                  control):
    headers = await accounts.headers("alice", can_interact=True)
    events = await client.ws_connect("/ws", headers=headers)
    audio = tone_sequence(tmp_path / "seminar.wav", TONES[:6])
    response = await upload(client, headers, audio, language="de", beam_size="2", initial_prompt="Entropie",
                            hotwords="Carnot", vad_filter="true", word_timestamps="false")
    job_id = (await response.json())["task_id"]
    await wait_for_state(client, headers, job_id, ("completed",))
    [options] = [json.loads(line) for line in control.with_name("options.jsonl").read_text().splitlines()]
    assert options == {"language": "de", "beam_size": 2, "initial_prompt": "Entropie", "hotwords": "Carnot",
                       "vad_filter": True, "word_timestamps": False, "batch_size": 0, "task": "transcribe"}
    progress = []
    while not any(event.get("state") == "completed" for event in progress):
        progress.append(await events.receive_json(timeout=5))
    await events.close()
    reports = [event for event in progress if event["type"] == "progress"]
    assert reports and all(event["total_secs"] == pytest.approx(6.0, abs=0.1) for event in reports)
    assert reports[-1]["done_secs"] == pytest.approx(6.0, abs=0.1) and reports[-1]["eta_secs"] == 0

