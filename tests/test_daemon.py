"""The daemon driven directly, without HTTP (FAKE tone backend): submit, events, cancel, retry, delete, wait."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conftest import fake_sections
from lazyd.daemon import Daemon
from lazyd.jobs.events import Event
from lazyd.jobs.ingest import StoredFile
from lazyd.jobs.states import CANCELLED, COMPLETED, COMPLETED_PARTIALLY, FINAL, IN_PROGRESS, QUEUED
from lazyd.options import JobOverrides
from lazyd.registry import load_registry
from lazyd.store import Transcription, TranscriptionChunk, User
from pipeline_helpers import TONES, expected_text, tone_sequence


@pytest.fixture
def control(tmp_path: Path) -> Path:
    return tmp_path / "fake" / "control.json"


@pytest.fixture
async def daemon(database_url, make_config, control) -> AsyncIterator[Daemon]:
    config = make_config(database_url, fake_sections(control))
    async with Daemon(config, load_registry(modules=config.plugins.modules)) as running:
        yield running


@pytest.fixture
async def alice(daemon: Daemon) -> User:
    return await User.acreate(username="alice", password="!", password_timestamp=0.0)


async def received(daemon: Daemon, path: Path) -> StoredFile:
    """``path`` streamed into the daemon in small pieces, as an upload arrives."""
    with path.open("rb") as source:
        return await daemon.receive(lambda: asyncio.to_thread(source.read, 4096), path.name, 10**8)


def slow(control: Path, seconds_per_segment: float = 0.3) -> None:
    control.write_text(json.dumps({"delay": seconds_per_segment}))


async def until_state(queue: asyncio.Queue[Event | None], job_id: int, states: tuple[str, ...]) -> list[Event]:
    """The job's events up to the first state change into ``states``."""
    seen = []
    async with asyncio.timeout(60):
        while True:
            event = await queue.get()
            assert event is not None, "the test fell behind the event stream"
            if event.data.get("transcription_id") == job_id:
                seen.append(event)
                if event.type == "state" and event.data["state"] in states:
                    return seen


async def test_a_submitted_recording_is_transcribed_with_its_options_and_its_events_are_published(
        daemon, alice, tmp_path, control):
    audio = tone_sequence(tmp_path / "lecture.wav", TONES[:12])
    async with daemon.events.subscription(alice.id) as queue:
        job = await daemon.submit(await received(daemon, audio), creator_id=alice.id,
                                  options=JobOverrides(language="de", beam_size=2))
        final = await daemon.wait(job.id)
        events = await until_state(queue, job.id, FINAL)
    assert final.current_state == COMPLETED and final.filename == "lecture.wav"
    assert [event.data["state"] for event in events if event.type == "state"] == [QUEUED, IN_PROGRESS, COMPLETED]
    assert {"segment", "progress", "chunk"} <= {event.type for event in events}
    chunks = await daemon.store.list(TranscriptionChunk.select().where(TranscriptionChunk.transcription == job.id)
                                     .order_by(TranscriptionChunk.chunk_no))
    assert " ".join(chunk.text for chunk in chunks) == expected_text(TONES[:12])
    calls = [json.loads(line) for line in control.with_name("options.jsonl").read_text().splitlines()]
    assert len(calls) == len(chunks) == 2
    assert all((call["language"], call["beam_size"], call["word_timestamps"]) == ("de", 2, True) for call in calls)
    assert final.options == {"language": "de", "beam_size": 2}


async def test_wait_passes_on_the_jobs_own_events(daemon, alice, tmp_path):
    job = await daemon.submit(await received(daemon, tone_sequence(tmp_path / "a.wav", TONES[:4])),
                              creator_id=alice.id)
    seen: list[Event] = []
    final = await daemon.wait(job.id, seen.append)
    assert final.current_state == COMPLETED
    assert seen and all(event.data["transcription_id"] == job.id for event in seen)
    assert seen[-1].type == "state" and seen[-1].data["state"] == COMPLETED


async def test_a_running_job_is_cancelled_at_once_and_a_retry_finishes_it(daemon, alice, tmp_path, control):
    slow(control)
    audio = tone_sequence(tmp_path / "lecture.wav", TONES)
    async with daemon.events.subscription(alice.id) as queue:
        job = await daemon.submit(await received(daemon, audio), creator_id=alice.id)
        await until_state(queue, job.id, (IN_PROGRESS,))
        cancelled = await daemon.cancel(job.id)
    assert cancelled.current_state in (CANCELLED, COMPLETED_PARTIALLY)
    assert (await daemon.wait(job.id)).current_state == cancelled.current_state
    slow(control, 0.0)
    retried = await daemon.retry(job.id)
    assert retried.current_state == QUEUED
    final = await daemon.wait(job.id)
    assert final.current_state == COMPLETED
    chunks = await daemon.store.list(TranscriptionChunk.select().where(TranscriptionChunk.transcription == job.id)
                                     .order_by(TranscriptionChunk.chunk_no))
    assert " ".join(chunk.text for chunk in chunks) == expected_text(TONES)


async def test_deleting_a_running_job_stops_it_and_removes_its_rows_and_audio(daemon, alice, tmp_path, control):
    slow(control)
    stored = await received(daemon, tone_sequence(tmp_path / "lecture.wav", TONES))
    async with daemon.events.subscription(alice.id) as queue:
        job = await daemon.submit(stored, creator_id=alice.id)
        await until_state(queue, job.id, (IN_PROGRESS,))
        waiting = asyncio.create_task(daemon.wait(job.id))
        await daemon.delete(job.id)
        events = await until_state(queue, job.id, FINAL)
        async with asyncio.timeout(10):
            while (event := await queue.get()).type != "deleted":
                pass
    assert event.data["transcription_id"] == job.id and events[-1].data["state"] in (CANCELLED, COMPLETED_PARTIALLY)
    assert (await waiting).current_state in (CANCELLED, COMPLETED_PARTIALLY)  # the cancel before the deletion
    assert await daemon.wait(job.id) is None
    assert await Transcription.aget_or_none(Transcription.id == job.id) is None
    assert not stored.path.exists()


async def test_deleting_a_user_goes_through_the_state_machine(daemon, alice, tmp_path, control):
    slow(control)
    stored = await received(daemon, tone_sequence(tmp_path / "lecture.wav", TONES))
    async with daemon.events.subscription(alice.id) as queue:
        job = await daemon.submit(stored, creator_id=alice.id)
        await until_state(queue, job.id, (IN_PROGRESS,))
        await daemon.delete_user(alice)
        types = [event.type for event in await until_state(queue, job.id, FINAL)]
        assert (await queue.get()).type == "deleted"
    assert types[-1] == "state"
    assert await User.aget_or_none(User.id == alice.id) is None
    assert await Transcription.aget_or_none(Transcription.id == job.id) is None
    assert not stored.path.exists()
    await asyncio.sleep(1.0)  # the worker was told to stop: no further chunk of the job is written
    assert await daemon.store.count(TranscriptionChunk.select()) == 0


async def test_a_file_submitted_in_place_is_read_where_it_lies(daemon, alice, tmp_path):
    audio = tone_sequence(tmp_path / "here.wav", TONES[:3])
    job = await daemon.submit_file(audio, creator_id=alice.id)
    assert job.audio_path == str(audio) and job.source == "cli"
    assert (await daemon.wait(job.id)).current_state == COMPLETED
    assert audio.exists() and not any(daemon.config.audio_path.glob("*"))


async def test_status_is_a_typed_value_with_the_backend_workers_and_queue(daemon, alice, tmp_path):
    job = await daemon.submit(await received(daemon, tone_sequence(tmp_path / "a.wav", TONES[:3])),
                              creator_id=alice.id)
    await daemon.wait(job.id)
    status = await daemon.status()
    assert status.database_ok and status.backend.scheduler and status.backend.backend == "fake"
    assert status.backend.problem == "" and status.node.endswith("/")
    assert [worker.slot for worker in status.workers] == [0] and status.workers[0].alive
    assert status.queue == {COMPLETED: 1} and status.inboxes == ()


async def test_operations_outside_the_context_say_the_daemon_is_not_running(make_config, database_url):
    config = make_config(database_url)
    idle = Daemon(config, load_registry())
    with pytest.raises(RuntimeError, match="not running"):
        await idle.cancel(1)
