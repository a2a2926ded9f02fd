"""The whole daemon with the real faster-whisper backend (bundled tiny.en on the CPU) on synthesized speech.

A minute of lecture, eleven sentences joined by one-second pauses, is uploaded, split into three chunks
cut inside the pauses, transcribed by the worker process and followed live over the WebSocket.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import statistics
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

import corpus
from conftest import Accounts, admin_health
from lazyd.store import Transcription
from lazyd.web import create_app
from pipeline_helpers import upload, wait_for_state
from speech import LECTURE_SENTENCES, SAMPLE_RATE, joined_speech_file, read_16k
from wer import wer

LECTURE = LECTURE_SENTENCES
PAUSE_SECS = 1.0
CHUNK_SECS = 25.0
"""About 59 s of speech: cuts near 25 s and 50 s, three chunks."""
CUT_WINDOW_SECS = 4.0
JOB_TIMEOUT = 240.0
EDGE_SECS = 0.25
"""piper ends and starts each sentence with a little silence of its own, next to the inserted pause."""
WORD_TIMING_SLACK = 0.1
"""Word times come from aligning 20 ms frames, and the last word of a sentence often runs a little into the
pause after it (seen: "box." ending 16 ms past a cut inside the pause on a 2-core AMD machine)."""
SILENT_PEAK = 0.002
"""About -54 dBFS: no speech within 0.1 s of a cut."""


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthesized speech cached for the whole session (the same place test_faster_whisper_backend uses)."""
    return tmp_path_factory.getbasetemp() / "speech"


@pytest.fixture(scope="session")
def lecture_file(speech_dir: Path) -> Path:
    return joined_speech_file(speech_dir, LECTURE, pause_secs=PAUSE_SECS)


@pytest.fixture(scope="session")
def inserted_pauses(lecture_file: Path) -> list[tuple[float, float]]:
    """Where the silences put between the sentences lie: the runs of exact digital zero a pause long.

    The voice's own quiet stretches are never exactly zero for that long.
    """
    with wave.open(str(lecture_file), "rb") as wav:
        rate = wav.getframerate()
        samples = numpy.frombuffer(wav.readframes(wav.getnframes()), numpy.int16)
    edges = numpy.flatnonzero(numpy.diff(numpy.concatenate(([0], samples == 0, [0])).astype(numpy.int8)))
    runs = [(start / rate, end / rate) for start, end in zip(edges[::2], edges[1::2])]
    pauses = [(start, end) for start, end in runs if end - start >= PAUSE_SECS - 0.01]
    assert len(pauses) == len(LECTURE) - 1
    return pauses


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: this module tests the backend through the daemon, not the store."""
    return f"sqlite:///{tmp_path / 'lazyd.sqlite3'}"


@pytest.fixture
async def client(aiohttp_client: Callable, make_config: Callable, database_url: str) -> TestClient:
    """The daemon with its scheduler and one faster-whisper worker (model loaded once, at start-up)."""
    config = make_config(database_url, sections={
        "transcription": {"backend": "faster-whisper", "device": "cpu", "cpu_threads": 2,
                          "chunk_secs": CHUNK_SECS, "cut_window_secs": CUT_WINDOW_SECS},
        "limits": {"min_audio_secs": 1.0},
        "scheduler": {"enabled": True, "poll_secs": 0.2, "lease_secs": 30.0, "stall_timeout_secs": 120.0},
    })
    return await aiohttp_client(create_app(config))


# -- helpers -------------------------------------------------------------------------------------------------

async def receive_until_completed(ws: Any, job_id: int, timeout: float) -> list[dict[str, Any]]:
    """Every event up to and including the job's ``completed`` state event."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            event = await ws.receive_json()
            events.append(event)
            if event["type"] == "state" and event["transcription_id"] == job_id:
                assert event["state"] not in ("processing_error", "processing_fail"), event
                if event["state"] == "completed":
                    return events


async def receive_for(ws: Any, seconds: float) -> list[dict[str, Any]]:
    """What arrives within ``seconds`` (the socket stays open)."""
    received: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                message = await ws.receive()
                if message.type != WSMsgType.TEXT:
                    break
                received.append(message.json())
    except TimeoutError:
        pass
    return received


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == kind]


async def transcript_page(client: TestClient, headers: dict[str, str], job_id: int, page: int,
                          size: int) -> dict[str, Any]:
    response = await client.get(f"/transcript?task_id={job_id}&page={page}&size={size}", headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


def assert_in_a_pause(cut: float, pauses: list[tuple[float, float]], audio: numpy.ndarray) -> None:
    """``cut`` is in one of the inserted pauses, or in the voice's own silence just around it."""
    assert any(begin - EDGE_SECS <= cut <= end + EDGE_SECS for begin, end in pauses), (cut, pauses)
    around = audio[round((cut - 0.1) * SAMPLE_RATE):round((cut + 0.1) * SAMPLE_RATE)]
    assert numpy.abs(around).max() < SILENT_PEAK, f"the cut at {cut} s is not in silence"


def sentences_within(start: float, end: float, pauses: list[tuple[float, float]]) -> str:
    """The reference text of the sentences that lie between ``start`` and ``end``."""
    bounds = [0.0, *(pause_end for _, pause_end in pauses)]
    return " ".join(sentence for sentence, begins in zip(LECTURE, bounds) if start <= begins < end)


# -- the tests -----------------------------------------------------------------------------------------------

async def test_a_lecture_is_transcribed_in_chunks_cut_in_pauses_and_followed_live(
        client, accounts, lecture_file, inserted_pauses):
    headers = await accounts.headers("alice", can_interact=True)
    async with client.ws_connect("/ws", headers=headers) as ws:
        hello = await ws.receive_json(timeout=10)
        assert hello["type"] == "hello"
        response = await upload(client, headers, lecture_file)
        assert response.status == 200, await response.text()
        job_id = (await response.json())["task_id"]
        events = await receive_until_completed(ws, job_id, JOB_TIMEOUT)

    job = await Transcription.aget_by_id(job_id)
    plan = job.chunk_plan
    assert len(plan) == 3

    # Live events: numbered in order with none missing (alice is the only user), each kind in order.
    assert [event["seq"] for event in events] == list(range(hello["seq"] + 1, hello["seq"] + 1 + len(events)))
    assert {event["stream"] for event in events} == {hello["stream"]}
    states = [event["state"] for event in of_type(events, "state")]
    assert states == ["queued", "in_progress", "completed"]
    segments = of_type(events, "segment")
    assert len(segments) >= len(LECTURE) // 2
    assert all(segment["end"] > segment["start"] for segment in segments)
    assert all(later["start"] >= earlier["end"] - 0.5 and later["start"] > earlier["start"]
               for earlier, later in zip(segments, segments[1:])), "segment times must increase"
    chunk_events = of_type(events, "chunk")
    assert [event["chunk_order"] for event in chunk_events] == [0, 1, 2]
    for event in chunk_events:
        before = events[:events.index(event)]
        assert any(s["chunk_order"] == event["chunk_order"] for s in of_type(before, "segment"))
    assert of_type(events, "progress")[-1]["done_secs"] <= job.audio_len_secs

    # A reconnect after the first chunk's event replays exactly what followed it; another stream resyncs.
    since = chunk_events[0]["seq"]
    async with client.ws_connect(f"/ws?stream={hello['stream']}&since={since}", headers=headers) as ws:
        replayed = await receive_for(ws, 1.0)
    assert replayed == [event for event in events if event["seq"] > since]
    async with client.ws_connect(f"/ws?stream=elsewhere&since={since}", headers=headers) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "resync"

    # The transcript, one chunk per page.
    pages = [await transcript_page(client, headers, job_id, page, size=1) for page in (1, 2, 3)]
    for number, page in enumerate(pages):
        assert (page["page"], page["size"], page["total"], page["pages"]) == (number + 1, 1, 3, 3)
        assert [chunk["chunk_order"] for chunk in page["transcriptions"]] == [number]
    beyond = await transcript_page(client, headers, job_id, 4, size=1)
    assert beyond["transcriptions"] == [] and beyond["pages"] == 3
    texts = [page["transcriptions"][0]["transcription"] for page in pages]
    assert texts == [event["text"] for event in chunk_events]
    hypothesis = " ".join(texts)
    assert wer(" ".join(LECTURE), hypothesis) <= 0.1, hypothesis

    # No word split at a chunk boundary: each cut lies in a pause, so every chunk holds whole sentences
    # and matches them on its own.
    cuts = [start for start, _ in plan[1:]]
    audio = read_16k(lecture_file)
    for cut in cuts:
        assert_in_a_pause(cut, inserted_pauses, audio)
    for (start, end), text in zip(plan, texts):
        reference = sentences_within(start, end, inserted_pauses)
        assert reference and wer(reference, text) <= 0.15, (start, end, reference, text)

    # Timestamped segments with words, each inside its chunk's span and on no cut.
    response = await client.get(f"/transcript/segments?transcript_id={job_id}&size=1000", headers=headers)
    assert response.status == 200
    listed = (await response.json())["segments"]
    assert [s["text"] for s in listed] == [s["text"] for s in segments]
    for segment in listed:
        start, end = plan[segment["chunk_order"]]
        assert start - 0.01 <= segment["start"] < segment["end"] <= end + 0.5, (segment, plan)
        assert segment["words"], segment
        for word in segment["words"]:
            assert word["start"] <= word["end"] and word["word"].strip()
            assert not any(word["start"] + WORD_TIMING_SLACK < cut < word["end"] - WORD_TIMING_SLACK
                           for cut in cuts), (word, cuts)
        assert 0.0 <= segment["confidence"] <= 1.0, segment
    assert statistics.median(segment["confidence"] for segment in listed) > 0.5  # clear synthetic speech

    # The language: tiny.en decodes English, with certainty; each chunk says so, and so does the whole.
    info = await (await client.get(f"/transcript/info?transcript_id={job_id}", headers=headers)).json()
    assert (info["language"], info["language_probability"]) == ("en", 1.0)
    response = await client.get(f"/transcript/export?task_id={job_id}&format=json", headers=headers)
    exported = await response.json()
    assert (exported["language"], exported["language_probability"]) == ("en", 1.0)
    assert [chunk["language"] for chunk in exported["chunks"]] == ["en", "en", "en"]
    assert [segment["confidence"] for chunk in exported["chunks"] for segment in chunk["segments"]] == [
        segment["confidence"] for segment in listed]


async def test_a_corpus_recording_is_transcribed_accurately(client, accounts):
    if not corpus.available():
        pytest.skip(corpus.MISSING_REASON)
    recording = corpus.CORPUS / "jfk.flac"
    reference = corpus.references()
    headers = await accounts.headers("alice", can_interact=True)
    response = await upload(client, headers, recording)
    assert response.status == 200, await response.text()
    job_id = (await response.json())["task_id"]
    await wait_for_state(client, headers, job_id, ("completed",), timeout=JOB_TIMEOUT)
    page = await transcript_page(client, headers, job_id, 1, size=50)
    text = " ".join(chunk["transcription"] for chunk in page["transcriptions"])
    assert wer(reference["jfk.flac"], text) <= 0.05, text


async def test_a_client_closing_the_event_socket_leaves_no_task_behind(aiohttp_client, make_config, database_url,
                                                                       caplog):
    from conftest import Accounts

    client = await aiohttp_client(create_app(make_config(database_url)))
    headers = await Accounts(client).headers("alice")
    async with client.ws_connect("/ws", headers=headers) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
    await asyncio.sleep(0.2)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        gc.collect()
        await asyncio.sleep(0.1)
    assert "Task was destroyed but it is pending" not in caplog.text


@pytest.fixture
async def whispercpp_client(aiohttp_client: Callable, make_config: Callable, database_url: str,
                            ggml_models_dir: Path) -> TestClient:
    """The daemon with one whisper.cpp worker on the bundled tiny.en converted to ggml."""
    config = make_config(database_url, sections={
        "transcription": {"backend": "whisper.cpp", "device": "cpu", "cpu_threads": 2,
                          "models_dir": str(ggml_models_dir), "chunk_secs": CHUNK_SECS,
                          "cut_window_secs": CUT_WINDOW_SECS},
        "limits": {"min_audio_secs": 1.0},
        "scheduler": {"enabled": True, "poll_secs": 0.2, "lease_secs": 30.0, "stall_timeout_secs": 120.0},
    })
    return await aiohttp_client(create_app(config))


async def uploaded_text(client: TestClient, headers: dict[str, str], recording: Path) -> str:
    """The transcript of ``recording`` uploaded and transcribed to completion."""
    response = await upload(client, headers, recording)
    assert response.status == 200, await response.text()
    job_id = (await response.json())["task_id"]
    await wait_for_state(client, headers, job_id, ("completed",), timeout=JOB_TIMEOUT)
    page = await transcript_page(client, headers, job_id, 1, size=50)
    return " ".join(chunk["transcription"] for chunk in page["transcriptions"])


async def test_the_whisper_cpp_backend_transcribes_an_upload_in_chunks(whispercpp_client, lecture_file):
    headers = await Accounts(whispercpp_client).headers("alice", can_interact=True)
    text = await uploaded_text(whispercpp_client, headers, lecture_file)
    assert wer(" ".join(LECTURE), text) <= 0.1, text
    health = await admin_health(whispercpp_client)
    assert (health["backend"]["backend"], health["backend"]["device"]) == ("whisper.cpp", "cpu")
    assert health["backend"]["reason"] == "named in the configuration" and health["backend"]["problem"] == ""
    assert health["host"]["cores"] >= 1 and health["host"]["description"]
    if corpus.available():
        jfk = await uploaded_text(whispercpp_client, headers, corpus.CORPUS / "jfk.flac")
        assert wer(corpus.references()["jfk.flac"], jfk) <= 0.05, jfk
