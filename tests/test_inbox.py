"""The inbox: recordings dropped into a folder come back as transcripts in the outbox (FAKE tone backend)."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
import os
import shutil
import stat
import threading
import time
from pathlib import Path

import numpy
import pytest

from conftest import PASSWORD, admin_health, fake_sections
from lazyd import users
from lazyd.auth import PasswordHasher
from lazyd.config import InboxConfig
from lazyd.inbox import InboxError
from lazyd.jobs.events import EventHub
from lazyd.jobs.ingest import upload_quota
from lazyd.jobs.states import JobStates
from lazyd.store import InboxFile, Store, Transcription, User
from lazyd.web import create_app
from lazyd.web.keys import CONFIG, DAEMON
from media import tone, write_audio
from pipeline_helpers import expected_text

WATCH_MODES = ["inotify", "poll"]


class Folders:
    def __init__(self, root: Path) -> None:
        self.inbox = root / "inbox"
        self.outbox = root / "outbox"
        self.inbox.mkdir(parents=True)

    def outputs(self) -> set[str]:
        return {path.name for path in self.outbox.glob("*") if not path.name.startswith(".")}


@pytest.fixture
def folders(tmp_path: Path) -> Folders:
    return Folders(tmp_path)


@pytest.fixture
async def owner(database_url: str) -> None:
    """The inbox's user must exist before the daemon starts."""
    store = await Store.open(database_url, pool_size=1)
    await users.create_user(PasswordHasher(4), "alice", PASSWORD)
    await store.close()


@pytest.fixture
def start(database_url, make_config, control, folders, owner, aiohttp_client):
    """Start a daemon with one inbox (returns its test client); call again to restart on the same store."""

    async def start_daemon(watch: str = "inotify", **inbox: object):
        sections = fake_sections(control)
        config = make_config(database_url, sections)
        settings = {"formats": ("txt", "srt"), "settle_secs": 1.0, "scan_secs": 0.2, **inbox}
        spec = InboxConfig(path=str(folders.inbox), user="alice", outbox=str(folders.outbox), watch=watch,
                           **settings)
        return await aiohttp_client(create_app(dataclasses.replace(config, inbox=(spec,))))

    return start_daemon


@pytest.fixture
def control(tmp_path: Path) -> Path:
    return tmp_path / "fake" / "control.json"


def tones_file(path: Path, freqs: list[int]) -> Path:
    return write_audio(path, numpy.concatenate([tone(freq, 1.0) for freq in freqs]))


async def wait_until(predicate, timeout: float = 60.0, interval: float = 0.1) -> None:
    """Poll ``predicate`` (plain or async) until it holds."""
    deadline = time.monotonic() + timeout
    while not await _holds(predicate):
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(interval)


async def _holds(predicate) -> bool:
    result = predicate()
    return await result if inspect.isawaitable(result) else result


def calls(control: Path) -> int:
    counter = control.with_name("calls.count")
    return int(counter.read_text()) if counter.exists() else 0


async def transcriptions() -> list[Transcription]:
    return await Transcription._meta.database.list(Transcription.select().order_by(Transcription.id))


@pytest.mark.parametrize("watch", WATCH_MODES)
async def test_a_dropped_recording_comes_back_as_transcripts_in_the_outbox(start, folders, control, watch):
    await start(watch)
    source = tones_file(folders.inbox / "lecture 1.wav", [300, 500, 700])
    await wait_until(lambda: folders.outputs() == {"lecture 1.txt", "lecture 1.srt"})
    assert (folders.outbox / "lecture 1.txt").read_text() == expected_text([300, 500, 700])
    assert (folders.outbox / "lecture 1.srt").read_text().startswith("1\n00:00:00,000 --> ")
    await wait_until(lambda: (folders.inbox / "done" / "lecture 1.wav").exists())
    assert not source.exists()
    [job] = await transcriptions()
    assert (job.source, job.filename, job.creator_id) == ("inbox", "lecture 1.wav", 1)


@pytest.mark.parametrize("watch", WATCH_MODES)
async def test_a_slow_writer_is_not_taken_before_it_is_complete(start, folders, control, watch, tmp_path):
    await start(watch, settle_secs=2.0)  # pieces come every 0.6 s: a wide margin on a loaded machine
    freqs = [300, 400, 500, 600, 700, 800]
    complete = tones_file(tmp_path / "whole.wav", freqs).read_bytes()
    target = folders.inbox / "slow.wav"
    pieces = [complete[n:n + len(complete) // 8 + 1] for n in range(0, len(complete), len(complete) // 8 + 1)]
    for piece in pieces:
        with open(target, "ab") as stream:
            stream.write(piece)
        await asyncio.sleep(0.6)
        assert await transcriptions() == [], "taken while still being written"
    await wait_until(lambda: "slow.txt" in folders.outputs())
    assert (folders.outbox / "slow.txt").read_text() == expected_text(freqs)
    [job] = await transcriptions()
    assert job.audio_len_secs == pytest.approx(6.0, abs=0.05)


@pytest.mark.parametrize("watch", WATCH_MODES)
async def test_fifty_files_dropped_at_once_are_each_transcribed_exactly_once(start, folders, control, watch,
                                                                            tmp_path):
    await start(watch)
    staging = tmp_path / "staging"
    staging.mkdir()
    expected = {}
    for n in range(50):
        freqs = [300 + 100 * (n % 10), 300 + 100 * (n // 10)]
        tones_file(staging / f"lecture{n:02d}.wav", freqs)
        expected[f"lecture{n:02d}.txt"] = expected_text(freqs)
    for path in staging.iterdir():
        os.replace(path, folders.inbox / path.name)
    await wait_until(lambda: {name for name in folders.outputs() if name.endswith(".txt")} == set(expected),
                     timeout=180)
    assert {name: (folders.outbox / name).read_text() for name in expected} == expected
    jobs = await transcriptions()
    assert len(jobs) == 50 and len({job.filename for job in jobs}) == 50
    assert calls(control) == 50


@pytest.mark.parametrize("watch", WATCH_MODES)
async def test_identical_content_under_another_name_is_not_transcribed_again(start, folders, control, tmp_path,
                                                                             watch):
    await start(watch)
    tones_file(tmp_path / "original.wav", [400, 800])
    shutil.copy(tmp_path / "original.wav", folders.inbox / "monday.wav")
    await wait_until(lambda: "monday.txt" in folders.outputs())
    shutil.copy(tmp_path / "original.wav", folders.inbox / "monday (copy).wav")
    await wait_until(lambda: "monday (copy).txt" in folders.outputs())
    assert (folders.outbox / "monday (copy).txt").read_text() == expected_text([400, 800])
    assert len(await transcriptions()) == 1 and calls(control) == 1
    await wait_until(lambda: (folders.inbox / "done" / "monday (copy).wav").exists())


async def test_hidden_and_partial_files_are_left_alone_and_non_audio_is_set_aside_with_a_reason(
        start, folders, control, tmp_path):
    client = await start()
    recording = tones_file(tmp_path / "recording.wav", [300, 400])
    for name in (".hidden.wav", "download.wav.part", "chrome.crdownload", "editor.wav~", "copy.tmp"):
        shutil.copy(recording, folders.inbox / name)
    (folders.inbox / "notes.txt").write_text("these are my notes, not a recording\n")
    await wait_until(lambda: (folders.inbox / "failed" / "notes.txt.error.txt").exists())
    assert "not an audio file" in (folders.inbox / "failed" / "notes.txt.error.txt").read_text()
    assert (folders.inbox / "failed" / "notes.txt").exists()
    await asyncio.sleep(1.5)
    assert await transcriptions() == []
    counted = client.app[DAEMON].metrics.registry.get_sample_value
    assert counted("lazyd_inbox_files_total", {"outcome": "failed"}) == 1
    assert counted("lazyd_inbox_files_total", {"outcome": "taken"}) is None, "nothing was taken"
    assert (folders.inbox / ".hidden.wav").exists() and (folders.inbox / "download.wav.part").exists()


async def test_a_failed_transcription_goes_to_failed_with_the_reason(start, folders, control):
    control.parent.mkdir(parents=True, exist_ok=True)
    control.write_text('{"misbehave": {"mode": "exception", "calls": [1, 2, 3]}}')
    await start()
    tones_file(folders.inbox / "broken.wav", [300, 400, 500])
    await wait_until(lambda: (folders.inbox / "failed" / "broken.wav.error.txt").exists(), timeout=90)
    assert "told to fail" in (folders.inbox / "failed" / "broken.wav.error.txt").read_text()
    assert folders.outputs() == set()


async def test_after_keep_leaves_the_recording_in_place_and_takes_it_only_once(start, folders, control):
    await start(after="keep")
    tones_file(folders.inbox / "kept.wav", [600, 700])
    await wait_until(lambda: "kept.txt" in folders.outputs())
    await asyncio.sleep(1.5)
    assert (folders.inbox / "kept.wav").exists()
    assert calls(control) == 1 and len(await transcriptions()) == 1


@pytest.mark.parametrize("watch", WATCH_MODES)
async def test_outbox_files_are_complete_at_the_moment_they_appear(start, folders, control, watch):
    await start(watch)
    first_sight: dict[str, bytes] = {}
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            for path in folders.outbox.glob("*") if folders.outbox.exists() else ():
                if not path.name.startswith(".") and path.name not in first_sight:
                    first_sight[path.name] = path.read_bytes()

    watcher = threading.Thread(target=reader)
    watcher.start()
    try:
        for n in range(5):
            tones_file(folders.inbox / f"part{n}.wav", [300 + 100 * n] * 8)
        await wait_until(lambda: len(first_sight) == 10, timeout=90)  # the reader's view, not a fresh listing
    finally:
        stop.set()
        watcher.join()
    assert set(first_sight) == folders.outputs()
    for name, seen in first_sight.items():
        assert seen == (folders.outbox / name).read_bytes(), f"{name} was visible before it was complete"


@pytest.mark.parametrize("watch", WATCH_MODES)
async def test_a_daemon_stopped_mid_batch_finishes_it_after_a_restart(start, folders, control, watch):
    control.parent.mkdir(parents=True, exist_ok=True)
    control.write_text('{"delay": 0.15}')
    first = await start(watch)
    names = [f"talk{n}" for n in range(6)]
    for n, name in enumerate(names):
        tones_file(folders.inbox / f"{name}.wav", [300 + 100 * n, 900])
    await wait_until(lambda: len([n for n in folders.outputs() if n.endswith(".txt")]) >= 2, timeout=90)
    await first.close()
    tones_file(folders.inbox / "while-down.wav", [1200, 1300])
    await start(watch)
    names.append("while-down")
    await wait_until(lambda: {n for n in folders.outputs() if n.endswith(".txt")} == {f"{n}.txt" for n in names},
                     timeout=120)
    jobs = await transcriptions()
    assert sorted(job.filename for job in jobs) == sorted(f"{name}.wav" for name in names)

    async def rows_done() -> bool:  # the row is marked done just after its outbox files appear
        rows = await InboxFile._meta.database.list(InboxFile.select())
        return all(row.status == "done" for row in rows)

    await wait_until(rows_done)
    rows = await InboxFile._meta.database.list(InboxFile.select())
    assert sorted(row.name for row in rows) == sorted(f"{name}.wav" for name in names)
    assert calls(control) <= len(names) + 1  # at most the one job interrupted by the stop is redone
    assert sorted(path.name for path in (folders.inbox / "done").iterdir()) == sorted(f"{n}.wav" for n in names)


async def test_an_outbox_inside_its_inbox_is_refused_at_start_up(make_config, folders):
    spec = InboxConfig(path=str(folders.inbox), user="alice", outbox=str(folders.inbox / "out"))
    with pytest.raises(InboxError, match="must not be the inbox or inside it"):
        create_app(dataclasses.replace(make_config(), inbox=(spec,)))
    same = dataclasses.replace(spec, outbox=str(folders.inbox))
    with pytest.raises(InboxError, match="must not be the inbox or inside it"):
        create_app(dataclasses.replace(make_config(), inbox=(same,)))


async def test_an_unknown_format_is_refused_at_start_up(make_config, folders,
                                                                database_url):
    spec = InboxConfig(path=str(folders.inbox), user="alice", outbox=str(folders.outbox), formats=("pdf",))
    with pytest.raises(InboxError, match="unknown format"):
        create_app(dataclasses.replace(make_config(database_url), inbox=(spec,)))


@pytest.mark.parametrize("change, message", [
    ({"formats": ()}, "formats is empty"), ({"scan_secs": 0.0}, "scan_secs must be above 0"),
    ({"settle_secs": -5.0}, "settle_secs at least 0"), ({"after": "delete"}, "after must be"),
    ({"watch": "fanotify"}, "watch must be")])
async def test_unusable_inbox_settings_are_refused_at_start_up(make_config, folders, change, message):
    spec = InboxConfig(path=str(folders.inbox), user="alice", outbox=str(folders.outbox), **change)
    with pytest.raises(InboxError, match=message):
        create_app(dataclasses.replace(make_config(), inbox=(spec,)))


async def test_an_inbox_can_name_its_own_model_language_prompt_and_hotwords(start, folders, control, tmp_path):
    course_model = tmp_path / "course-model" / "control.json"
    course_model.parent.mkdir()
    course_model.write_text("{}")
    await start(model=str(course_model), language="fr", initial_prompt="Thermodynamique", hotwords="Carnot")
    tones_file(folders.inbox / "seminar.wav", [500, 600])
    await wait_until(lambda: "seminar.txt" in folders.outputs())
    [job] = await transcriptions()
    assert job.options == {"model": str(course_model), "language": "fr", "initial_prompt": "Thermodynamique",
                           "hotwords": "Carnot"}
    assert job.model_name == "FAKE tone detector (control.json)" and calls(course_model) == 1
    assert calls(control) == 0
    [options] = [json.loads(line) for line in course_model.with_name("options.jsonl").read_text().splitlines()]
    assert (options["language"], options["initial_prompt"], options["hotwords"]) == ("fr", "Thermodynamique",
                                                                                     "Carnot")


async def test_inbox_files_wait_their_turn_and_are_kept_beyond_the_upload_quota(
        database_url, make_config, control, folders, owner, aiohttp_client):
    sections = fake_sections(control)
    sections["limits"] = {"min_audio_secs": 1.0, "active_jobs_per_user": 1, "max_transcriptions_per_user": 2}
    spec = InboxConfig(path=str(folders.inbox), user="alice", outbox=str(folders.outbox), settle_secs=0.5,
                       scan_secs=0.2)
    await aiohttp_client(create_app(dataclasses.replace(make_config(database_url, sections), inbox=(spec,))))
    for n in range(4):
        tones_file(folders.inbox / f"week{n}.wav", [300 + 100 * n, 1000])
    await wait_until(lambda: len(folders.outputs()) == 4)
    assert len(await transcriptions()) == 4


async def test_several_inboxes_are_watched_at_once_each_for_its_own_user(
        database_url, make_config, control, tmp_path, owner, aiohttp_client):
    store = await Store.open(database_url, pool_size=1)
    await users.create_user(PasswordHasher(4), "bobby", PASSWORD)
    await store.close()
    physics, chemistry = Folders(tmp_path / "physics"), Folders(tmp_path / "chemistry")
    specs = (InboxConfig(path=str(physics.inbox), user="alice", outbox=str(physics.outbox), watch="inotify",
                         settle_secs=0.5, scan_secs=0.2),
             InboxConfig(path=str(chemistry.inbox), user="bobby", outbox=str(chemistry.outbox), watch="poll",
                         formats=("json",), settle_secs=0.5, scan_secs=0.2))
    client = await aiohttp_client(create_app(dataclasses.replace(make_config(database_url, fake_sections(control)),
                                                                 inbox=specs)))
    tones_file(physics.inbox / "waves.wav", [300, 400])
    tones_file(chemistry.inbox / "bonds.wav", [500, 600])
    await wait_until(lambda: physics.outputs() == {"waves.txt"} and chemistry.outputs() == {"bonds.json"})
    owners = {job.filename: job.creator_id for job in await transcriptions()}
    assert owners["waves.wav"] != owners["bonds.wav"]
    health = await admin_health(client)
    assert [(inbox["user"], inbox["watching"]) for inbox in health["inboxes"]] == [
        ("alice", "inotify"), ("bobby", "polling every 0.2 s")]


def test_network_file_systems_are_recognised_from_the_mount_table(tmp_path):
    from lazyd.inbox.watching import NETWORK_FILESYSTEMS, filesystem_type

    assert filesystem_type(tmp_path) not in NETWORK_FILESYSTEMS
    assert filesystem_type(Path("/proc/self")) == "proc"


async def test_a_recording_put_back_after_delivery_is_delivered_again_without_a_new_transcription(
        start, folders, control):
    await start()
    tones_file(folders.inbox / "again.wav", [700, 800])
    await wait_until(lambda: (folders.inbox / "done" / "again.wav").exists())
    (folders.outbox / "again.txt").unlink()
    shutil.copy2(folders.inbox / "done" / "again.wav", folders.inbox / "again.wav")  # same size and time
    await wait_until(lambda: "again.txt" in folders.outputs())
    await wait_until(lambda: (folders.inbox / "done" / "again (2).wav").exists())
    assert len(await transcriptions()) == 1 and calls(control) == 1


async def test_an_unreadable_file_is_retried_without_stopping_the_folder(start, folders, control, monkeypatch):
    import lazyd.inbox.intake

    refusals = []
    real_copy = lazyd.inbox.intake.copy_file

    def copy_file(source, directory, max_bytes):
        if source.name == "locked.wav" and len(refusals) < 3:
            refusals.append(source.name)
            raise PermissionError(13, "Permission denied", str(source))
        return real_copy(source, directory, max_bytes)

    monkeypatch.setattr(lazyd.inbox.intake, "copy_file", copy_file)
    await start()
    tones_file(folders.inbox / "locked.wav", [300, 400])
    tones_file(folders.inbox / "open.wav", [500, 600])
    await wait_until(lambda: {"open.txt", "locked.txt"} <= folders.outputs())
    assert len(refusals) == 3


@pytest.mark.parametrize("quota_applies", [False, True])
async def test_an_upload_makes_room_among_inbox_transcripts_only_where_the_inbox_says_so(
        database_url, make_config, folders, owner, quota_applies):
    spec = InboxConfig(path=str(folders.inbox), user="alice", outbox=str(folders.outbox),
                       quota_applies=quota_applies)
    config = dataclasses.replace(make_config(database_url, {"limits": {"max_transcriptions_per_user": 3}}),
                                 inbox=(spec,))
    store = await Store.open(database_url, pool_size=2)
    alice = await User.aget(User.username == "alice")
    for n in range(4):
        job = await Transcription.acreate(creator=alice, source="inbox", current_state="completed",
                                          audio_len_secs=10.0, chunk_size_secs=900.0, filename=f"week{n}.wav")
        await InboxFile.acreate(inbox=str(spec.folder), name=f"week{n}.wav", sha256=f"{n:064d}", size=1, mtime=0.0,
                                transcription=job, status="done")
    states = JobStates(store, EventHub())
    await states.enqueue(alice.id, upload_quota(config), source="upload", audio_len_secs=10.0,
                         chunk_size_secs=900.0, filename="question.wav")
    kept = [job.filename for job in await transcriptions()]
    await store.close()
    if quota_applies:
        assert kept == ["week2.wav", "week3.wav", "question.wav"]
    else:
        assert kept == ["week0.wav", "week1.wav", "week2.wav", "week3.wav", "question.wav"]


async def test_a_file_over_the_size_limit_is_set_aside_without_being_copied(start, folders, control):
    client = await start()
    limit_mb = client.app[CONFIG].limits.max_upload_mb
    with open(folders.inbox / "huge.wav", "wb") as stream:
        stream.truncate(limit_mb * 1024 * 1024 + 1)
    tones_file(folders.inbox / "fine.wav", [300, 400])
    await wait_until(lambda: (folders.inbox / "failed" / "huge.wav.error.txt").exists())
    assert "larger than the" in (folders.inbox / "failed" / "huge.wav.error.txt").read_text()
    await wait_until(lambda: "fine.txt" in folders.outputs())
    assert len(await transcriptions()) == 1 and len(list(client.app[CONFIG].audio_path.iterdir())) == 1


async def test_a_file_swapped_for_a_link_after_the_listing_is_never_read_through_it(
        start, folders, control, tmp_path, monkeypatch):
    """A thread swaps a settled regular file for a symbolic link to a recording outside the inbox right
    after the listing that found it settled, round after round, until a swap lands before the copy."""
    import lazyd.inbox.intake

    (tmp_path / "private").mkdir()
    outside = tones_file(tmp_path / "private" / "secret.wav", [300, 400, 500])
    listed = threading.Event()
    real_listing = lazyd.inbox.intake.listing

    def listing(folder):
        found = real_listing(folder)
        listed.set()
        return found

    monkeypatch.setattr(lazyd.inbox.intake, "listing", listing)
    await start(settle_secs=0.0)

    def swap_after_a_listing(name: str) -> None:
        regular = folders.inbox / name
        regular.write_bytes(b"not a recording, only 32 bytes.\n")
        for _ in range(2):  # seen twice unchanged: settled, taken in the round of the second listing
            listed.clear()
            listed.wait(10)
        link = folders.inbox / f".{name}.link"
        link.symlink_to(outside)
        os.replace(link, regular)

    reasons = []
    for attempt in range(30):
        name = f"swap{attempt}.wav"
        await asyncio.to_thread(swap_after_a_listing, name)
        note = folders.inbox / "failed" / f"{name}.error.txt"
        await wait_until(lambda: note.exists() or calls(control) > 0)
        assert calls(control) == 0, "the recording outside the inbox was transcribed"
        reasons.append(note.read_text())
        if "symbolic link" in reasons[-1]:
            break
    assert "symbolic link" in reasons[-1], reasons
    assert (folders.inbox / "failed" / name).is_symlink() and outside.exists()
    assert await transcriptions() == [] and calls(control) == 0


def test_the_copy_reads_what_was_opened_and_checked_never_what_the_name_points_to_later(tmp_path, monkeypatch):
    """copy_file opens the name once without following links, checks that descriptor and reads from it:
    a swap before the open is refused, a swap after it does not change what is read."""
    from lazyd.jobs import ingest

    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"x" * 4096)
    source = tmp_path / "inbox" / "talk.wav"
    source.parent.mkdir()
    real_open = os.open

    def swap_source():
        source.unlink()
        source.symlink_to(outside)

    def swap_then_open(path, flags, *args):  # os.open is patched for everyone: only the source is swapped
        if Path(path) == source:
            swap_source()
        return real_open(path, flags, *args)

    def open_then_swap(path, flags, *args):
        fd = real_open(path, flags, *args)
        if Path(path) == source:
            swap_source()
        return fd

    source.write_bytes(b"mine")
    monkeypatch.setattr(ingest.os, "open", swap_then_open)
    with pytest.raises(ingest.NotARegularFile, match="symbolic link"):
        ingest.copy_file(source, tmp_path / "audio", 1024)
    source.unlink()
    source.write_bytes(b"mine")
    monkeypatch.setattr(ingest.os, "open", open_then_swap)
    stored = ingest.copy_file(source, tmp_path / "audio", 1024)
    assert stored.path.read_bytes() == b"mine" and stored.size == 4
    monkeypatch.setattr(ingest.os, "open", real_open)
    with pytest.raises(ingest.UploadTooLarge):  # the link's target is over the limit, but never opened:
        ingest.copy_file(outside, tmp_path / "audio", 1024)  # this is the target itself, checked by fstat
    os.mkfifo(tmp_path / "inbox" / "pipe.wav")
    with pytest.raises(ingest.NotARegularFile, match="not a regular file"):  # and no wait for a writer
        ingest.copy_file(tmp_path / "inbox" / "pipe.wav", tmp_path / "audio", 1024)
    assert [path.read_bytes() for path in (tmp_path / "audio").iterdir()] == [b"mine"]


async def test_a_delivery_that_fails_is_retried_and_holds_up_no_other_file(start, folders, control, monkeypatch):
    import lazyd.inbox.delivery

    failures = []
    real_write = lazyd.inbox.delivery.write_atomically

    def write_atomically(path, body, *mode):
        if path.name.startswith("first") and "second.srt" not in folders.outputs():
            failures.append(path.name)
            raise OSError(28, "No space left on device", str(path))
        return real_write(path, body, *mode)

    monkeypatch.setattr(lazyd.inbox.delivery, "write_atomically", write_atomically)
    await start()
    tones_file(folders.inbox / "first.wav", [300, 400])
    await wait_until(lambda: len(failures) >= 1)
    tones_file(folders.inbox / "second.wav", [500, 600])  # delivered while first.wav still fails
    await wait_until(lambda: {"first.txt", "second.txt"} <= folders.outputs())
    await wait_until(lambda: (folders.inbox / "done" / "first.wav").exists())


async def test_a_file_whose_transcription_is_deleted_before_it_ran_is_set_aside(start, folders, control):
    control.parent.mkdir(parents=True, exist_ok=True)
    control.write_text('{"delay": 1.0}')
    client = await start()
    tones_file(folders.inbox / "running.wav", [300, 400, 500, 600])
    tones_file(folders.inbox / "waiting.wav", [700, 800])

    async def queued_job() -> Transcription | None:  # the slot is busy with running.wav for some 4 s
        waiting = [job for job in await transcriptions() if job.filename == "waiting.wav"]
        return waiting[0] if waiting and waiting[0].current_state == "queued" else None

    await wait_until(queued_job)
    await client.app[DAEMON].states.delete((await queued_job()).id)
    await wait_until(lambda: (folders.inbox / "failed" / "waiting.wav.error.txt").exists())
    assert "deleted before it finished" in (folders.inbox / "failed" / "waiting.wav.error.txt").read_text()
    await wait_until(lambda: "running.txt" in folders.outputs())


async def test_an_inbox_whose_folders_cannot_be_made_yet_keeps_trying(start, folders, control, monkeypatch):
    import lazyd.inbox

    attempts = []
    real_make = lazyd.inbox.Inbox._make_folders

    def make_folders(inbox):
        attempts.append(1)
        if len(attempts) < 3:
            raise PermissionError(13, "Permission denied", str(inbox.outbox))
        real_make(inbox)

    monkeypatch.setattr(lazyd.inbox, "SETUP_RETRY_SECS", 0.2)
    monkeypatch.setattr(lazyd.inbox.Inbox, "_make_folders", make_folders)
    await start()
    tones_file(folders.inbox / "later.wav", [300, 400])
    await wait_until(lambda: "later.txt" in folders.outputs())
    assert len(attempts) == 3


async def test_inotify_asked_for_but_unavailable_falls_back_to_polling(start, folders, control, monkeypatch):
    from watchdog.observers.inotify import InotifyObserver

    def no_inotify(observer):
        raise OSError(24, "inotify instance limit reached")

    monkeypatch.setattr(InotifyObserver, "start", no_inotify)
    client = await start("inotify")
    tones_file(folders.inbox / "polled.wav", [300, 400])
    await wait_until(lambda: "polled.txt" in folders.outputs())
    [inbox] = (await admin_health(client))["inboxes"]
    assert inbox["watching"] == "polling every 0.2 s (inotify unavailable: inotify instance limit reached)"


async def test_recordings_that_share_a_name_but_not_an_extension_keep_their_own_transcripts(start, folders,
                                                                                           control, tmp_path):
    await start()
    write_audio(folders.inbox / "talk.flac", numpy.concatenate([tone(300, 1.0), tone(400, 1.0)]))
    tones_file(folders.inbox / "talk.wav", [700, 800])
    await wait_until(lambda: len([name for name in folders.outputs() if name.endswith(".txt")]) == 2)
    texts = {(folders.outbox / name).read_text() for name in folders.outputs() if name.endswith(".txt")}
    assert texts == {expected_text([300, 400]), expected_text([700, 800])}
    assert "talk.wav.txt" in folders.outputs() or "talk.flac.txt" in folders.outputs()


async def test_recordings_whose_names_would_share_an_outbox_name_each_keep_their_own(start, folders, control):
    """y.wav and y.wav.ogg both used to become y.wav.txt; each stem is now checked against every one taken."""
    await start()
    recordings = {"y.wav": [300, 400], "y.mp3": [500, 600], "y.wav.ogg": [700, 800]}
    for name, freqs in recordings.items():
        tones_file(folders.inbox / name, freqs)
    await wait_until(lambda: len(list((folders.inbox / "done").iterdir())) == 3)
    texts = sorted((folders.outbox / name).read_text() for name in folders.outputs() if name.endswith(".txt"))
    assert texts == sorted(expected_text(freqs) for freqs in recordings.values())
    stems = {row.name: row.outbox_stem for row in await InboxFile._meta.database.list(InboxFile.select())}
    assert len(set(stems.values())) == 3 and stems["y.wav.ogg"] in ("y.wav", "y.wav.ogg")


async def test_a_name_at_the_file_system_limit_is_delivered_and_set_aside_with_shortened_names(
        start, folders, control):
    """A 255-byte name gets transcripts and error notes that fit: the suffix replaces the end of the name."""
    await start(formats=("txt", "docx"))
    spoken, unusable = "n" * 251 + ".wav", "m" * 251 + ".wav"
    tones_file(folders.inbox / spoken, [300, 400])
    (folders.inbox / unusable).write_bytes(b"not audio at all")
    await wait_until(lambda: len(folders.outputs()) == 2 and (folders.inbox / "done" / spoken).exists())
    assert all(len(name.encode()) <= 255 for name in folders.outputs())
    [text] = [name for name in folders.outputs() if name.endswith(".txt")]
    assert text.startswith("n" * 200) and (folders.outbox / text).read_text() == expected_text([300, 400])
    [note] = [path for path in (folders.inbox / "failed").iterdir() if path.name.endswith(".error.txt")]
    assert note.name.startswith("m" * 200) and "not" in note.read_text()
    assert (folders.inbox / "failed" / unusable).exists() and calls(control) == 1


async def test_a_delivery_that_keeps_failing_is_logged_once_and_set_aside_after_its_tries(
        start, folders, control, monkeypatch, caplog):
    import lazyd.inbox.delivery

    real_write = lazyd.inbox.delivery.write_atomically

    def write_atomically(path, body, *mode):
        if path.parent == folders.outbox.resolve() and path.name.startswith("doomed"):
            raise OSError(28, "No space left on device", str(path))
        return real_write(path, body, *mode)

    monkeypatch.setattr(lazyd.inbox.delivery, "write_atomically", write_atomically)
    monkeypatch.setattr(lazyd.inbox.delivery, "DELIVERY_TRIES", 3)
    await start()
    tones_file(folders.inbox / "doomed.wav", [300, 400])
    note = folders.inbox / "failed" / "doomed.wav.error.txt"
    await wait_until(note.exists)
    assert "could not be delivered (3 tries)" in note.read_text() and "No space left" in note.read_text()
    warnings = [record for record in caplog.records if "could not deliver doomed.wav" in record.getMessage()]
    assert len(warnings) == 1 and warnings[0].exc_info is not None
    [row] = await InboxFile._meta.database.list(InboxFile.select())
    assert row.status == "failed" and (await transcriptions())[0].current_state == "completed"


async def test_outbox_transcripts_stay_readable_under_the_daemons_private_umask(start, folders, control):
    """The data directory is the daemon's alone; the transcripts are for the people using the folders."""
    await start()
    previous = os.umask(0o077)
    try:
        tones_file(folders.inbox / "talk.wav", [300, 400])
        await wait_until(lambda: {"talk.txt", "talk.srt"} <= folders.outputs())
    finally:
        os.umask(previous)
    assert {oct(stat.S_IMODE((folders.outbox / name).stat().st_mode)) for name in folders.outputs()} == {"0o644"}


async def test_the_owner_of_an_inbox_cannot_delete_their_account(start, folders):
    client = await start()
    login = await client.post("/auth/login", json={"username": "alice", "password": PASSWORD})
    headers = {"Authorization": f"Bearer {(await login.json())['access_token']}"}
    response = await client.delete("/auth/info", headers=headers)
    assert response.status == 409
    assert str(folders.inbox) in (await response.json())["detail"]
    assert await User.aget_or_none(User.username == "alice") is not None
    assert (await client.get("/auth/info", headers=headers)).status == 200


async def test_an_inbox_whose_owner_is_missing_is_its_own_problem_and_the_daemon_runs(
        make_config, database_url, folders, owner, aiohttp_client, caplog):
    """Its owner may have been deleted by an older lazyd, or never created: the API and the other inboxes
    keep working, and /health says what is wrong."""
    ok = InboxConfig(path=str(folders.inbox), user="alice", outbox=str(folders.outbox), formats=("txt",))
    orphan = InboxConfig(path=str(folders.inbox.parent / "orphan"), user="nobody",
                         outbox=str(folders.inbox.parent / "orphan-out"), formats=("txt",))
    Path(orphan.path).mkdir()
    with caplog.at_level(logging.ERROR):
        client = await aiohttp_client(create_app(dataclasses.replace(make_config(database_url), inbox=(ok, orphan))))
    assert f"inbox {orphan.path} is not watched: there is no user 'nobody'" in caplog.text
    login = await client.post("/auth/login", json={"username": "alice", "password": PASSWORD})
    assert login.status == 200
    daemon = client.app[DAEMON]
    [watched] = daemon.inboxes
    assert watched.owner.username == "alice"
    status = {inbox.user: inbox for inbox in (await daemon.status()).inboxes}
    assert status["alice"].watching and not status["alice"].problem
    assert not status["nobody"].watching and "there is no user 'nobody'" in status["nobody"].problem
