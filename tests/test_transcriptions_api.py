"""The seed's transcription routes and lazyd's additions, without a running scheduler.

Ownership on every route, real pagination, cancel/retry/delete rules, and uploads: every accepted format is
queued, every rejected file gets a clear 4xx and leaves no row and no file behind.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import numpy
import pytest

from lazyd.store import Transcription, TranscriptionChunk, User
from lazyd.web import create_app
from media import noise, silence, tone, truncate, video_with_audio, video_without_audio, write_audio

TRANSCRIPTION_KEYS = {"id", "creator_id", "audio_len_secs", "chunk_size_secs", "current_state", "create_date",
                      "update_date", "description", "error_count", "filename", "done_secs"}


@pytest.fixture
async def client(aiohttp_client, make_config, database_url):
    """The API with short limits for small test files, and no scheduler (jobs stay as the test leaves them)."""
    sections = {"limits": {"min_audio_secs": 2.0, "max_audio_secs": 60.0, "max_upload_mb": 1},
                "transcription": {"chunk_secs": 4.0, "cut_window_secs": 1.0}}
    return await aiohttp_client(create_app(make_config(database_url, sections, worker_token="w0rker-token")))


def speechlike(path: Path, secs: float = 6.0) -> Path:
    return write_audio(path, numpy.concatenate([tone(300, secs / 2), silence(0.3), noise(secs / 2 - 0.3)]))


async def make_job(owner: User, state: str = "queued", chunks: tuple[str, ...] = (), **fields) -> Transcription:
    job = await Transcription.acreate(creator=owner, audio_len_secs=30.0, chunk_size_secs=10.0,
                                      current_state=state, chunk_plan=[[0, 10], [10, 20], [20, 30]], **fields)
    for number, text in enumerate(chunks):
        start, words = number * 10.0, text.split()
        timed = [{"start": start + n * 4 / len(words), "end": start + (n + 1) * 4 / len(words), "word": word,
                  "probability": 0.9} for n, word in enumerate(words)]
        segments = [{"start": start, "end": start + 4, "text": text, "avg_logprob": -0.2, "no_speech_prob": 0.01,
                     "words": timed}]
        await TranscriptionChunk.acreate(transcription=job, chunk_no=number, text=text, segments=segments,
                                         start_secs=number * 10.0, end_secs=number * 10.0 + 10)
    return job


async def post_file(client, headers, path: Path | None, **fields: str):
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    if path is not None:
        form.add_field("audiofile", path.read_bytes(), filename=path.name)
    return await client.post("/upload-audiofile", data=form, headers=headers)


def audio_files(client) -> list[Path]:
    from lazyd.web.keys import CONFIG

    folder = client.app[CONFIG].audio_path
    return sorted(folder.iterdir()) if folder.exists() else []


# -- ownership ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method, path", [
    ("GET", "/transcript?task_id={id}"),
    ("GET", "/transcript/info?transcript_id={id}"),
    ("GET", "/transcript/segments?transcript_id={id}"),
    ("POST", "/transcript/cancel?transcript_id={id}"),
    ("POST", "/transcript/retry?transcript_id={id}"),
    ("DELETE", "/transcript?transcript_id={id}"),
])
async def test_another_users_transcription_is_indistinguishable_from_a_missing_one(client, accounts, method, path):
    bob = await accounts.create("bobby")
    theirs = await make_job(bob, "processing_fail", ("secret lecture",))
    alice = await accounts.headers("alice")
    foreign = await client.request(method, path.format(id=theirs.id), headers=alice)
    missing = await client.request(method, path.format(id=999_999), headers=alice)
    assert foreign.status == missing.status == 404
    assert await foreign.json() == await missing.json() == {"detail": "Transcription not found"}
    unchanged = await Transcription.aget_by_id(theirs.id)
    assert unchanged.current_state == "processing_fail"
    chunks = TranscriptionChunk.select().where(TranscriptionChunk.transcription == theirs.id)
    assert await TranscriptionChunk._meta.database.count(chunks) == 1


async def test_the_list_shows_only_the_callers_transcriptions_newest_first(client, accounts):
    alice_user = await accounts.create("alice")
    bob = await accounts.create("bobby")
    first = await make_job(alice_user, "completed", ("first lecture text",))
    await make_job(bob, "completed", ("not yours",))
    second = await make_job(alice_user, "queued")
    headers = {"Authorization": f"Bearer {(await accounts.login('alice'))['access_token']}"}
    body = await (await client.get("/transcriptions?size=1&page=1", headers=headers)).json()
    assert (body["total"], body["pages"], body["size"], body["page"]) == (2, 2, 1, 1)
    [newest] = body["transcriptions"]
    assert set(newest) == TRANSCRIPTION_KEYS and newest["id"] == second.id and newest["description"] == ""
    older = (await (await client.get("/transcriptions?page=2&size=1", headers=headers)).json())["transcriptions"]
    assert [item["id"] for item in older] == [first.id]
    assert older[0]["description"] == "first lecture text"
    past_the_end = await (await client.get("/transcriptions?page=3&size=1", headers=headers)).json()
    assert (past_the_end["total"], past_the_end["pages"], past_the_end["transcriptions"]) == (2, 2, [])


async def test_each_transcription_names_its_recording_and_how_much_of_it_is_done(client, accounts):
    alice_user = await accounts.create("alice")
    running = await make_job(alice_user, "in_progress", ("zero", "one"), filename="week 3.mp3")
    await make_job(alice_user, "queued", filename="week 4.mp3")
    headers = {"Authorization": f"Bearer {(await accounts.login('alice'))['access_token']}"}
    listed = (await (await client.get("/transcriptions", headers=headers)).json())["transcriptions"]
    assert [(item["filename"], item["done_secs"]) for item in listed] == [("week 4.mp3", 0.0), ("week 3.mp3", 20.0)]
    one = await (await client.get(f"/transcript/info?transcript_id={running.id}", headers=headers)).json()
    assert (one["filename"], one["done_secs"]) == ("week 3.mp3", 20.0)


async def test_the_transcript_is_really_paginated(client, accounts):
    alice_user = await accounts.create("alice")
    job = await make_job(alice_user, "completed", ("zero", "one", "two"))
    headers = {"Authorization": f"Bearer {(await accounts.login('alice'))['access_token']}"}
    body = await (await client.get(f"/transcript?task_id={job.id}&page=2&size=2", headers=headers)).json()
    assert (body["total"], body["pages"]) == (3, 2)
    assert body["transcriptions"] == [{"id": body["transcriptions"][0]["id"], "chunk_order": 2,
                                       "chunk_size_secs": 10, "transcription": "two"}]


async def test_segments_come_with_their_chunk_times_and_words(client, accounts):
    alice_user = await accounts.create("alice")
    job = await make_job(alice_user, "completed", ("zero words", "one words"))
    headers = {"Authorization": f"Bearer {(await accounts.login('alice'))['access_token']}"}
    body = await (await client.get(f"/transcript/segments?transcript_id={job.id}", headers=headers)).json()
    assert body["total"] == 2
    assert [(s["chunk_order"], s["start"], s["text"]) for s in body["segments"]] == [
        (0, 0.0, "zero words"), (1, 10.0, "one words")]
    assert body["segments"][1]["words"][0]["word"] == "one"


async def test_info_returns_the_seed_object(client, accounts):
    alice_user = await accounts.create("alice")
    job = await make_job(alice_user, "completed", ("x" * 300,))
    headers = {"Authorization": f"Bearer {(await accounts.login('alice'))['access_token']}"}
    body = await (await client.get(f"/transcript/info?transcript_id={job.id}", headers=headers)).json()
    assert set(body) == TRANSCRIPTION_KEYS | {"language", "language_probability", "node"}  # and lazyd's details
    assert body["description"] == "x" * 256 and body["current_state"] == "completed"
    assert (body["language"], body["language_probability"]) == ("", None)  # no chunk said


# -- cancel, retry, delete ----------------------------------------------------------------------------------

@pytest.mark.parametrize("chunks, final", [((), "cancelled"), (("done part",), "completed_partially")])
async def test_cancel_keeps_finished_chunks(client, accounts, chunks, final):
    alice_user = await accounts.create("alice")
    job = await make_job(alice_user, "queued", chunks)
    headers = {"Authorization": f"Bearer {(await accounts.login('alice'))['access_token']}"}
    response = await client.post(f"/transcript/cancel?transcript_id={job.id}", headers=headers)
    assert response.status == 200 and response.content_type == "text/plain" and await response.text() == "OK"
    assert (await Transcription.aget_by_id(job.id)).current_state == final
    again = await client.post(f"/transcript/cancel?transcript_id={job.id}", headers=headers)
    assert again.status == 409
    assert "cannot be cancelled" in (await again.json())["detail"]


async def test_retry_requeues_a_failed_job_and_refuses_a_completed_one(client, accounts):
    alice_user = await accounts.create("alice")
    failed = await make_job(alice_user, "processing_fail", error_count=3)
    done = await make_job(alice_user, "completed", ("all",))
    headers = {"Authorization": f"Bearer {(await accounts.login('alice'))['access_token']}"}
    response = await client.post(f"/transcript/retry?transcript_id={failed.id}", headers=headers)
    assert response.status == 200
    body = await response.json()
    assert (body["current_state"], body["error_count"]) == ("queued", 0)
    refused = await client.post(f"/transcript/retry?transcript_id={done.id}", headers=headers)
    assert refused.status == 409


async def test_delete_removes_the_rows_and_the_audio(client, accounts, tmp_path):
    alice_user = await accounts.create("alice")
    audio = tmp_path / "lecture.wav"
    audio.write_bytes(b"RIFF")
    job = await make_job(alice_user, "queued", ("part",), audio_path=str(audio))
    headers = {"Authorization": f"Bearer {(await accounts.login('alice'))['access_token']}"}
    response = await client.delete(f"/transcript?transcript_id={job.id}", headers=headers)
    assert response.status == 204
    assert not audio.exists()
    assert await Transcription.aget_or_none(Transcription.id == job.id) is None
    gone = await client.get(f"/transcript/info?transcript_id={job.id}", headers=headers)
    assert gone.status == 404


# -- uploads ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".ogg", ".opus", ".flac", ".m4a", ".webm"])
async def test_every_common_audio_format_is_accepted(client, accounts, tmp_path, suffix):
    headers = await accounts.headers("alice", can_interact=True)
    response = await post_file(client, headers, speechlike(tmp_path / f"lecture{suffix}"))
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["message"] == "File uploaded successfully" and body["file"] == f"lecture{suffix}"
    job = await Transcription.aget_by_id(body["task_id"])
    assert job.current_state == "queued" and job.source == "upload"
    assert job.audio_len_secs == pytest.approx(6.0, abs=0.1)
    assert job.chunk_plan[0][0] == 0 and job.chunk_plan[-1][1] == pytest.approx(job.audio_len_secs, abs=0.01)
    assert len(job.audio_sha256) == 64 and Path(job.audio_path).exists()


async def test_a_video_with_an_audio_track_is_accepted(client, accounts, tmp_path):
    headers = await accounts.headers("alice", can_interact=True)
    response = await post_file(client, headers, video_with_audio(tmp_path / "lecture.mp4", 4.0))
    assert response.status == 200, await response.text()


async def test_two_uploads_of_one_file_are_two_files_on_disk(client, accounts, tmp_path):
    headers = await accounts.headers("alice", can_interact=True)
    path = speechlike(tmp_path / "same.wav")
    first = await (await post_file(client, headers, path)).json()
    await client.post(f"/transcript/cancel?transcript_id={first['task_id']}", headers=headers)
    second = await (await post_file(client, headers, path)).json()
    paths = {(await Transcription.aget_by_id(body["task_id"])).audio_path for body in (first, second)}
    assert len(paths) == 2 and all(Path(p).exists() for p in paths)


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path | None, int, str]]:
    text = tmp_path / "notes.mp3"
    text.write_text("these are lecture notes, not audio\n" * 20)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    m4a = write_audio(tmp_path / "cut.m4a", tone(300, 5))
    truncate(m4a, m4a.stat().st_size // 2)
    return {
        "non-audio": (text, 415, "not an audio file"),
        "empty": (empty, 400, "empty"),
        "video without sound": (video_without_audio(tmp_path / "silent.mp4", 3), 415, "no audio stream"),
        "truncated m4a": (m4a, 415, "not an audio file"),
        "too short": (write_audio(tmp_path / "short.wav", tone(300, 1.0)), 422, "between 2 and 60 seconds"),
        "too long": (write_audio(tmp_path / "long.wav", tone(300, 61.0, rate=8000), rate=8000), 422,
                     "between 2 and 60 seconds"),
        "too large": (write_audio(tmp_path / "big.wav", noise(40, rate=16000)), 413, "upload limit"),
        "missing field": (None, 422, "Field required"),
    }


@pytest.mark.parametrize("case", ["non-audio", "empty", "video without sound", "truncated m4a", "too short",
                                  "too long", "too large", "missing field"])
async def test_a_rejected_upload_says_why_and_leaves_nothing(client, accounts, tmp_path, case):
    path, status, message = _bad_files(tmp_path)[case]
    headers = await accounts.headers("alice", can_interact=True)
    response = await post_file(client, headers, path)
    assert response.status == status, await response.text()
    detail = (await response.json())["detail"]
    assert message in str(detail)
    if status == 422:
        assert [problem["loc"] for problem in detail] == [["body", "audiofile"]]
    assert await Transcription._meta.database.count(Transcription.select()) == 0
    assert audio_files(client) == []


async def test_bad_options_are_422_and_leave_nothing(client, accounts, tmp_path):
    headers = await accounts.headers("alice", can_interact=True)
    response = await post_file(client, headers, speechlike(tmp_path / "a.wav"), beam_size="zero", vad_filter="maybe")
    assert response.status == 422
    assert {tuple(e["loc"]) for e in (await response.json())["detail"]} == {("body", "beam_size"),
                                                                           ("body", "vad_filter")}
    ranged = await post_file(client, headers, speechlike(tmp_path / "b.wav"), beam_size="0")
    assert ranged.status == 422
    assert await Transcription._meta.database.count(Transcription.select()) == 0 and audio_files(client) == []


async def test_an_oversized_option_field_is_refused_and_leaves_nothing(client, accounts, tmp_path):
    headers = await accounts.headers("alice", can_interact=True)
    response = await post_file(client, headers, speechlike(tmp_path / "a.wav"), initial_prompt="x" * 20_000)
    assert response.status == 422
    assert (await response.json())["detail"][0]["loc"] == ["body", "initial_prompt"]
    assert await Transcription._meta.database.count(Transcription.select()) == 0 and audio_files(client) == []


async def test_options_are_stored_with_the_job(client, accounts, tmp_path):
    headers = await accounts.headers("alice", can_interact=True)
    response = await post_file(client, headers, speechlike(tmp_path / "a.wav"), language="en",
                               initial_prompt="Carnot cycle", word_timestamps="false", beam_size="3")
    job = await Transcription.aget_by_id((await response.json())["task_id"])
    assert job.options == {"language": "en", "initial_prompt": "Carnot cycle", "word_timestamps": False,
                           "beam_size": 3}


async def test_a_user_without_can_interact_may_not_upload(client, accounts, tmp_path):
    headers = await accounts.headers("alice")
    response = await post_file(client, headers, speechlike(tmp_path / "a.wav"))
    assert response.status == 403
    assert audio_files(client) == []


async def test_a_second_active_upload_is_refused_with_the_active_ones_id_and_state(client, accounts, tmp_path):
    headers = await accounts.headers("alice", can_interact=True)
    first = await (await post_file(client, headers, speechlike(tmp_path / "a.wav"))).json()
    second = await post_file(client, headers, speechlike(tmp_path / "b.wav"))
    assert second.status == 409
    assert f"Transcription {first['task_id']} is queued" in (await second.json())["detail"]
    assert len(audio_files(client)) == 1


async def test_the_oldest_finished_transcription_and_its_audio_make_room(aiohttp_client, make_config,
                                                                         database_url, accounts, tmp_path):
    sections = {"limits": {"min_audio_secs": 2.0, "max_transcriptions_per_user": 2}}
    client = await aiohttp_client(create_app(make_config(database_url, sections)))
    from conftest import Accounts

    accounts = Accounts(client)
    headers = await accounts.headers("alice", can_interact=True)
    ids = []
    for name in ("one.wav", "two.wav", "three.wav"):
        body = await (await post_file(client, headers, speechlike(tmp_path / name))).json()
        ids.append(body["task_id"])
        await client.post(f"/transcript/cancel?transcript_id={body['task_id']}", headers=headers)
    remaining = [row.id for row in await Transcription._meta.database.list(Transcription.select())]
    assert sorted(remaining) == ids[1:]
    assert len(audio_files(client)) == 2


# -- the external worker route ------------------------------------------------------------------------------

async def test_the_worker_route_needs_the_worker_token(client, accounts):
    job = await make_job(await accounts.create("alice"))
    body = {"transcription_id": job.id, "current_state": "in_progress"}
    assert (await client.post("/worker/transcription_status", json=body)).status == 403
    wrong = await client.post("/worker/transcription_status?secret_worker_token=nope", json=body)
    assert wrong.status == 403
    ok = await client.post("/worker/transcription_status", json=body, headers={"X-Worker-Token": "w0rker-token"})
    assert ok.status == 200
    assert (await ok.json())["transcription"]["current_state"] == "in_progress"


async def test_a_worker_reports_chunks_and_three_errors_fail_the_job(client, accounts):
    job = await make_job(await accounts.create("alice"))
    url = "/worker/transcription_status?secret_worker_token=w0rker-token"
    chunk = await client.post(url, json={"transcription_id": job.id, "new_chunk": {"chunk_no": 1, "text": "b"}})
    assert chunk.status == 200
    again = await client.post(url, json={"transcription_id": job.id, "new_chunk": {"chunk_no": 1, "text": "B"}})
    assert again.status == 200
    rows = await TranscriptionChunk._meta.database.list(
        TranscriptionChunk.select().where(TranscriptionChunk.transcription == job.id))
    assert [(row.chunk_no, row.text) for row in rows] == [(1, "B")]
    states = []
    for _ in range(3):
        answer = await client.post(url, json={"transcription_id": job.id, "current_state": "processing_error"})
        states.append((await answer.json())["transcription"]["current_state"])
    assert states == ["processing_error", "processing_error", "completed_partially"]


async def test_a_worker_reporting_its_last_chunk_with_completed_keeps_the_chunk(client, accounts):
    job = await make_job(await accounts.create("alice"), "in_progress", ("a.", "b."))
    url = "/worker/transcription_status?secret_worker_token=w0rker-token"
    response = await client.post(url, json={"transcription_id": job.id, "current_state": "completed",
                                            "new_chunk": {"chunk_no": 2, "text": "c."}})
    assert response.status == 200, await response.text()
    assert (await response.json())["transcription"]["current_state"] == "completed"
    chunks = TranscriptionChunk.select().where(TranscriptionChunk.transcription == job.id)
    rows = await TranscriptionChunk._meta.database.list(chunks.order_by(TranscriptionChunk.chunk_no))
    assert [row.text for row in rows] == ["a.", "b.", "c."]


async def test_a_worker_may_report_the_tail_chunk_the_seed_would_have_cut(client, accounts):
    alice = await accounts.create("alice")
    job = await Transcription.acreate(creator=alice, audio_len_secs=25.0, chunk_size_secs=10.0,
                                      current_state="in_progress", chunk_plan=[[0, 10], [10, 25]])  # tail merged
    url = "/worker/transcription_status?secret_worker_token=w0rker-token"
    tail = await client.post(url, json={"transcription_id": job.id, "new_chunk": {"chunk_no": 2, "text": "c."}})
    assert tail.status == 200, await tail.text()
    [row] = await TranscriptionChunk._meta.database.list(
        TranscriptionChunk.select().where(TranscriptionChunk.transcription == job.id))
    assert (row.chunk_no, row.start_secs, row.end_secs) == (2, 20.0, 25.0)
    beyond = await client.post(url, json={"transcription_id": job.id, "new_chunk": {"chunk_no": 3, "text": "d."}})
    assert beyond.status == 422


@pytest.mark.parametrize("body, status", [
    ({"transcription_id": 999_999, "current_state": "queued"}, 404),
    ({"transcription_id": "{id}", "new_chunk": {"chunk_no": 4, "text": "x"}}, 422),
    ({"transcription_id": "{id}", "new_chunk": {"chunk_no": -1, "text": "x"}}, 422),
    ({"transcription_id": "{id}", "current_state": "finished"}, 422),
    ({"transcription_id": "{id}", "new_chunk": {"text": "x"}}, 422),
])
async def test_bad_worker_reports_change_nothing(client, accounts, body, status):
    job = await make_job(await accounts.create("alice"))
    body = {key: (job.id if value == "{id}" else value) for key, value in body.items()}
    response = await client.post("/worker/transcription_status?secret_worker_token=w0rker-token", json=body)
    assert response.status == status
    assert (await Transcription.aget_by_id(job.id)).current_state == "queued"
    assert await TranscriptionChunk._meta.database.count(TranscriptionChunk.select()) == 0


async def test_a_worker_cancel_without_chunks_gives_cancelled_not_completed_partially(client, accounts):
    job = await make_job(await accounts.create("alice"))
    response = await client.post("/worker/transcription_status?secret_worker_token=w0rker-token",
                                 json={"transcription_id": job.id, "current_state": "cancelled"})
    assert (await response.json())["transcription"]["current_state"] == "cancelled"


async def test_queued_inbox_jobs_do_not_block_an_interactive_upload(client, accounts, tmp_path):
    headers = await accounts.headers("alice", can_interact=True)
    alice = await User.aget(User.username == "alice")
    await make_job(alice, "queued", source="inbox")
    response = await post_file(client, headers, speechlike(tmp_path / "a.wav"))
    assert response.status == 200, await response.text()


@pytest.mark.parametrize("content_type, body", [
    ("multipart/form-data", b"--x\r\nContent-Disposition: form-data; name=\"audiofile\"\r\n\r\nabc\r\n--x--\r\n"),
    ("multipart/form-data; boundary=x", b"this is not multipart at all"),
    ("multipart/form-data; boundary=x",
     b"--x\r\nContent-Disposition: form-data; name=\"audiofile\"; filename=\"a.wav\"\r\n\r\nRIFF and then noth"),
])
async def test_a_malformed_multipart_body_is_a_400_and_leaves_nothing(client, accounts, content_type, body):
    headers = await accounts.headers("alice", can_interact=True)
    response = await client.post("/upload-audiofile", data=body, headers={**headers, "Content-Type": content_type})
    assert response.status == 400, await response.text()
    assert "multipart" in (await response.json())["detail"]
    assert await Transcription._meta.database.count(Transcription.select()) == 0
    assert audio_files(client) == []


@pytest.mark.parametrize("path", ["/transcript/info?task_id=99999999999999999999",
                                  "/transcriptions?page=99999999999999999999",
                                  "/transcript?task_id={id}&page=99999999999999999999"])
async def test_integers_too_large_for_the_database_are_a_422(client, accounts, path):
    headers = await accounts.headers("alice")
    job = await make_job(await User.aget(User.username == "alice"), "completed", ("text.",))
    response = await client.get(path.format(id=job.id), headers=headers)
    assert response.status == 422, await response.text()


async def test_the_seed_routes_take_any_page_size_as_the_seed_did(client, accounts):
    headers = await accounts.headers("alice")
    job = await make_job(await User.aget(User.username == "alice"), "completed", ("one.", "two."))
    listing = await (await client.get("/transcriptions?size=5000", headers=headers)).json()
    assert (listing["size"], listing["pages"], len(listing["transcriptions"])) == (5000, 1, 1)
    chunks = await (await client.get(f"/transcript?task_id={job.id}&size=100000", headers=headers)).json()
    assert (chunks["size"], chunks["pages"], len(chunks["transcriptions"])) == (100000, 1, 2)
    beyond = await client.get(f"/transcript?task_id={job.id}&size=100000&page=99999999999999999", headers=headers)
    assert beyond.status == 422 and (await beyond.json())["detail"][0]["loc"] == ["query", "page"]
