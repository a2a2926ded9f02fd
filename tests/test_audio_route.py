"""``GET /transcript/audio`` (issue 14): the recording, to its owner alone, with HTTP ranges for a player."""

from __future__ import annotations

from pathlib import Path

import pytest

from lazyd.store import Transcription
from media import tone, write_audio
from pipeline_helpers import upload


@pytest.fixture
async def recording(client, accounts, tmp_path):
    """Alice's uploaded recording: her headers, the job id and the bytes she sent."""
    headers = await accounts.headers("alice", can_interact=True)
    sent = write_audio(tmp_path / "lecture.wav", tone(440, 12.0))
    job_id = (await (await upload(client, headers, sent)).json())["task_id"]
    return headers, job_id, sent.read_bytes()


async def test_the_owner_gets_the_whole_recording_as_uploaded(client, recording):
    headers, job_id, sent = recording
    response = await client.get(f"/transcript/audio?task_id={job_id}", headers=headers)
    assert response.status == 200 and response.content_type == "audio/x-wav"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert await response.read() == sent


@pytest.mark.parametrize("asked, part", [("bytes=0-99", slice(0, 100)), ("bytes=1000-", slice(1000, None)),
                                         ("bytes=-50", slice(-50, None))])
async def test_a_range_gets_that_part_alone(client, recording, asked, part):
    headers, job_id, sent = recording
    response = await client.get(f"/transcript/audio?task_id={job_id}", headers={**headers, "Range": asked})
    assert response.status == 206
    body = await response.read()
    assert body == sent[part]
    start = len(sent) + part.start if part.start < 0 else part.start
    assert response.headers["Content-Range"] == f"bytes {start}-{start + len(body) - 1}/{len(sent)}"


async def test_a_range_beyond_the_end_is_416(client, recording):
    headers, job_id, sent = recording
    response = await client.get(f"/transcript/audio?task_id={job_id}",
                                headers={**headers, "Range": f"bytes={len(sent) + 10}-"})
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{len(sent)}"


async def test_another_users_recording_is_not_found_and_an_api_key_works(client, accounts, recording):
    headers, job_id, sent = recording
    bob = await accounts.headers("bobby")
    assert (await client.get(f"/transcript/audio?task_id={job_id}", headers=bob)).status == 404
    assert (await client.get(f"/transcript/audio?task_id={job_id + 1}", headers=headers)).status == 404
    assert (await client.get(f"/transcript/audio?task_id={job_id}")).status == 401
    key = (await (await client.post("/auth/keys", json={"name": "player"}, headers=headers)).json())["key"]
    by_key = await client.get(f"/transcript/audio?task_id={job_id}", headers={"Authorization": f"Bearer {key}"})
    assert await by_key.read() == sent


async def test_a_recording_no_longer_stored_is_404_with_the_reason(client, recording):
    headers, job_id, _ = recording
    Path((await Transcription.aget_by_id(job_id)).audio_path).unlink()  # the file goes, the row stays
    response = await client.get(f"/transcript/audio?task_id={job_id}", headers=headers)
    assert response.status == 404 and "no longer stored" in (await response.json())["detail"]


async def test_a_browsers_player_may_send_the_access_token_in_the_query_but_never_a_key(client, accounts, recording):
    headers, job_id, sent = recording
    tokens = await accounts.login("alice")
    ranged = await client.get(f"/transcript/audio?task_id={job_id}&token={tokens['access_token']}",
                              headers={"Range": "bytes=0-9"})
    assert ranged.status == 206 and await ranged.read() == sent[:10]
    key = (await (await client.post("/auth/keys", json={"name": "url"}, headers=headers)).json())["key"]
    by_key = await client.get(f"/transcript/audio?task_id={job_id}&token={key}")
    assert by_key.status == 401 and "never in the URL" in (await by_key.json())["detail"]
    elsewhere = await client.get(f"/transcript/info?transcript_id={job_id}&token={tokens['access_token']}")
    assert elsewhere.status == 401, "only the audio route takes a token in the query"
