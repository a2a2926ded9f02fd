"""The OpenAI-compatible routes (issue 12), driven by the official ``openai`` client where a client would be.

The daemon runs with the bundled tiny.en on synthesized speech (two chunks, so that streaming has to keep
their order). Models, translations and errors, which need no backend: tests/test_openai_errors.py.
"""

from __future__ import annotations

import asyncio
import json
import wave
from collections.abc import Callable
from pathlib import Path

import aiohttp
import openai
import pytest
import srt
import webvtt
from aiohttp.test_utils import TestClient

from lazyd.store import Transcription
from lazyd.web import create_app
from pipeline_helpers import wait_for_state
from speech import LECTURE_SENTENCES, joined_speech_file
from wer import wer

SENTENCES = LECTURE_SENTENCES[:5]
"""About 25 s of speech: cut near 12 s, two chunks."""
JOB_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def lecture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return joined_speech_file(tmp_path_factory.getbasetemp() / "speech", SENTENCES, pause_secs=1.0)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: this module tests the routes, not the store."""
    return f"sqlite:///{tmp_path / 'lazyd.sqlite3'}"


@pytest.fixture
async def client(aiohttp_client: Callable, make_config: Callable, database_url: str) -> TestClient:
    """The daemon with one faster-whisper worker on the bundled model (``accounts`` uses it too)."""
    config = make_config(database_url, sections={
        "transcription": {"backend": "faster-whisper", "device": "cpu", "chunk_secs": 12.0, "cut_window_secs": 3.0},
        "limits": {"min_audio_secs": 1.0},
        "scheduler": {"enabled": True, "poll_secs": 0.2, "lease_secs": 30.0, "stall_timeout_secs": 120.0},
    })
    return await aiohttp_client(create_app(config))


async def api_key(client: TestClient, accounts, username: str = "alice") -> str:
    headers = await accounts.headers(username, can_interact=True)
    response = await client.post("/auth/keys", json={"name": "openai client"}, headers=headers)
    return (await response.json())["key"]


def openai_client(client: TestClient, key: str) -> openai.AsyncOpenAI:
    """The official client on this daemon (use it in ``async with``, which closes its connections)."""
    return openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key=key, max_retries=0, timeout=JOB_TIMEOUT)


async def lazyd_text(client: TestClient, key: str, job_id: int) -> str:
    """lazyd's own transcript: its chunks in order, as ``GET /transcript`` gives them."""
    response = await client.get(f"/transcript?task_id={job_id}&size=100", headers={"Authorization": f"Bearer {key}"})
    return " ".join(chunk["transcription"] for chunk in (await response.json())["transcriptions"])


def words_of(text: str) -> list[str]:
    return text.split()


# -- live: every format through the openai client -----------------------------------------------------------

@pytest.mark.parametrize("response_format", ["json", "text", "srt", "vtt"])
async def test_each_format_carries_lazyds_own_transcript(client, accounts, lecture, response_format):
    key = await api_key(client, accounts)
    async with openai_client(client, key) as api:
        with lecture.open("rb") as audio:
            raw = await api.audio.transcriptions.with_raw_response.create(
                file=audio, model="whisper-1", response_format=response_format)
    job_id = int(raw.headers["X-Lazyd-Transcription-Id"])
    expected = await lazyd_text(client, key, job_id)
    assert wer(" ".join(SENTENCES), expected) < 0.1
    body = raw.http_response.text
    if response_format == "json":
        assert json.loads(body) == {"text": expected}
    elif response_format == "text":
        assert body == expected
    elif response_format == "srt":
        assert words_of(" ".join(cue.content for cue in srt.parse(body))) == words_of(expected)
    else:
        assert words_of(" ".join(cue.text for cue in webvtt.from_string(body))) == words_of(expected)


async def test_verbose_json_has_openais_shape_with_segments_and_words(client, accounts, lecture):
    key = await api_key(client, accounts)
    async with openai_client(client, key) as api:
        with lecture.open("rb") as audio:
            result = await api.audio.transcriptions.create(
                file=audio, model="tiny.en", response_format="verbose_json",
                timestamp_granularities=["segment", "word"])
    assert (result.task, result.language) == ("transcribe", "english")
    with wave.open(str(lecture), "rb") as wav:
        assert result.duration == pytest.approx(wav.getnframes() / wav.getframerate(), abs=0.05)
    assert words_of(" ".join(segment.text for segment in result.segments)) == words_of(result.text)
    assert [segment.id for segment in result.segments] == list(range(len(result.segments)))
    for segment in result.segments:
        assert segment.start < segment.end and segment.tokens == [] and segment.compression_ratio > 0
        assert segment.avg_logprob < 0 and 0 <= segment.no_speech_prob <= 1
    assert [word.word for word in result.words] == words_of(result.text)
    starts = [word.start for word in result.words]
    assert starts == sorted(starts) and all(word.start <= word.end for word in result.words)


async def test_word_granularity_alone_leaves_segments_out(client, accounts, lecture):
    key = await api_key(client, accounts)
    async with openai_client(client, key) as api:
        with lecture.open("rb") as audio:
            raw = await api.audio.transcriptions.with_raw_response.create(
                file=audio, model="whisper-1", response_format="verbose_json", timestamp_granularities=["word"])
    body = json.loads(raw.http_response.text)
    assert "segments" not in body and len(body["words"]) == len(words_of(body["text"]))


async def test_streaming_sends_the_text_in_order_then_the_whole(client, accounts, lecture):
    key = await api_key(client, accounts)
    async with openai_client(client, key) as api:
        with lecture.open("rb") as audio:
            stream = await api.audio.transcriptions.create(file=audio, model="whisper-1", stream=True)
            events = [event async for event in stream]
    deltas = [event.delta for event in events if event.type == "transcript.text.delta"]
    [done] = [event for event in events if event.type == "transcript.text.done"]
    assert events[-1] is done and len(deltas) >= 2
    assert "".join(deltas) == done.text
    [job] = await Transcription._meta.database.list(Transcription.select())
    assert done.text == await lazyd_text(client, key, job.id)


async def test_a_client_that_goes_away_mid_request_leaves_the_job_to_finish(client, accounts, lecture):
    key = await api_key(client, accounts)
    form = aiohttp.FormData()
    form.add_field("model", "whisper-1")
    form.add_field("file", lecture.read_bytes(), filename=lecture.name, content_type="audio/wav")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.0):
            await client.post("/v1/audio/transcriptions", data=form, headers={"Authorization": f"Bearer {key}"})
    headers = {"Authorization": f"Bearer {key}"}
    [job] = (await (await client.get("/transcriptions", headers=headers)).json())["transcriptions"]
    info = await wait_for_state(client, headers, job["id"], ("completed",), timeout=JOB_TIMEOUT)
    assert info["current_state"] == "completed"
    assert wer(" ".join(SENTENCES), await lazyd_text(client, key, job["id"])) < 0.1


async def test_prefer_respond_async_answers_202_with_the_job_at_once(client, accounts, lecture):
    key = await api_key(client, accounts)
    headers = {"Authorization": f"Bearer {key}", "Prefer": "respond-async"}
    form = aiohttp.FormData()
    form.add_field("file", lecture.read_bytes(), filename=lecture.name, content_type="audio/wav")
    response = await client.post("/v1/audio/transcriptions", data=form, headers=headers)
    assert response.status == 202
    body = await response.json()
    assert body["status"] == "queued" and response.headers["X-Lazyd-Transcription-Id"] == str(body["id"])
    assert response.headers["Location"] == f"/transcript/info?transcript_id={body['id']}"
    await wait_for_state(client, headers, body["id"], ("completed",), timeout=JOB_TIMEOUT)


