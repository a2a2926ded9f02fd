"""Hostile and broken requests, each named: a clear 4xx in the ``{"detail": ...}`` shape, and nothing changed.

The property-based sweep over every route is in ``test_fuzz_routes.py``; these are the cases a probe of
main found answering 500, kept as plain examples so that each one is always tried.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy
import pytest

from lazyd.store import Transcription, User
from lazyd.validation import MAX_JSON_DEPTH
from lazyd.web import create_app
from lazyd.web.keys import CONFIG
from media import noise, silence, tone, write_audio
from world import snapshot

ADMIN_TOKEN = "4dmin-token"
WORKER_TOKEN = "w0rker-token"


@pytest.fixture
async def client(aiohttp_client, make_config, database_url):
    sections = {"limits": {"min_audio_secs": 2.0, "max_audio_secs": 60.0, "max_upload_mb": 1}}
    config = make_config(database_url, sections, admin_token=ADMIN_TOKEN, worker_token=WORKER_TOKEN)
    return await aiohttp_client(create_app(config))


async def world(client) -> tuple:
    return await snapshot(Path(client.app[CONFIG].data_dir))


def assert_detail_shape(body: dict, status: int) -> None:
    assert set(body) == {"detail"}
    if status == 422:
        assert body["detail"] and all(set(error) == {"loc", "msg", "type"} for error in body["detail"])
    else:
        assert isinstance(body["detail"], str) and body["detail"]


# -- JSON bodies ---------------------------------------------------------------------------------------------

DEEP = 5000
HOSTILE_JSON = {
    "deep array": "[" * DEEP + "]" * DEEP,
    "deep object": '{"a":' * DEEP + "1" + "}" * DEEP,
    "one level past the limit": '{"username": ' + "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH + "}",
    "a 5000-digit number": '{"username": ' + "7" * 5000 + "}",
    "a 5000-digit fraction": '{"username": 0.' + "7" * 5000 + "}",
    "a lone surrogate": '{"username": "\\ud800abcde", "password": "Correct_horse1"}',
    "a lone low surrogate in a key": '{"\\udc00": 1}',
    "NaN": '{"username": NaN}',
    "Infinity": '{"transcription_id": -Infinity}',
}
JSON_ROUTES = [
    ("POST", "/auth/register"),
    ("POST", "/auth/login"),
    ("POST", "/auth/refresh"),
    ("PATCH", "/auth/patch?user_id={user}&secret_admin_token=" + ADMIN_TOKEN),
    ("PATCH", "/users/{user}"),
    ("POST", "/worker/transcription_status"),
]


async def admin_and_user(client, accounts) -> tuple[dict[str, str], User]:
    headers = await accounts.headers("adminuser", role="admin")
    return {**headers, "X-Worker-Token": WORKER_TOKEN}, await accounts.create("plainuser")


@pytest.mark.parametrize("method, path", JSON_ROUTES)
@pytest.mark.parametrize("case", HOSTILE_JSON)
async def test_a_hostile_json_body_is_a_422_json_invalid_and_changes_nothing(client, accounts, method, path, case):
    headers, user = await admin_and_user(client, accounts)
    before = await world(client)
    response = await client.request(method, path.format(user=user.id), data=HOSTILE_JSON[case].encode(),
                                    headers={**headers, "Content-Type": "application/json"})
    assert response.status == 422, await response.text()
    body = await response.json()
    assert_detail_shape(body, 422)
    assert [error["type"] for error in body["detail"]] == ["json_invalid"]
    assert await world(client) == before


async def test_json_just_within_the_limits_is_read(client, accounts):
    await admin_and_user(client, accounts)
    nested = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)
    body = '{"username": "alice", "password": "Correct_horse1", "extra": ' + nested + ', "n": ' + "9" * 64 + "}"
    response = await client.post("/auth/register", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 201, await response.text()
    assert (await response.json())["username"] == "alice"


async def test_a_surrogate_pair_is_text_not_a_lone_surrogate(client):
    body = '{"username": "\\ud83d\\ude00", "password": "Correct_horse1"}'
    response = await client.post("/auth/register", data=body, headers={"Content-Type": "application/json"})
    [error] = (await response.json())["detail"]
    assert error["loc"] == ["body", "username"] and error["type"] == "value_error"  # read, then refused


@pytest.mark.parametrize("method, path", JSON_ROUTES)
async def test_a_body_that_is_not_text_is_a_400(client, accounts, method, path):
    headers, user = await admin_and_user(client, accounts)
    before = await world(client)
    response = await client.request(method, path.format(user=user.id), data=b'{"username": "\xff\xfe"}',
                                    headers={**headers, "Content-Type": "application/json"})
    assert response.status == 400
    assert_detail_shape(await response.json(), 400)
    assert await world(client) == before


# -- integers beyond what a column holds ------------------------------------------------------------------------

@pytest.mark.parametrize("transcription_id, kind", [(2**63, "int_range"), (2**31, "int_range"),
                                                     (-(2**31) - 1, "int_range"), (10**40, "int_range")])
async def test_an_id_beyond_the_id_column_in_a_worker_report_is_a_422(client, accounts, transcription_id, kind):
    headers, _ = await admin_and_user(client, accounts)
    before = await world(client)
    response = await client.post("/worker/transcription_status", headers=headers,
                                 data=json.dumps({"transcription_id": transcription_id, "current_state": "queued"}))
    assert response.status == 422, await response.text()
    [error] = (await response.json())["detail"]
    assert (error["loc"], error["type"]) == (["body", "transcription_id"], kind)
    assert await world(client) == before


async def test_a_chunk_number_beyond_64_bits_is_a_422(client, accounts):
    headers, user = await admin_and_user(client, accounts)
    job = await Transcription.acreate(creator=user, audio_len_secs=30.0, chunk_size_secs=10.0, current_state="queued")
    before = await world(client)
    report = {"transcription_id": job.id, "new_chunk": {"text": "x", "chunk_no": 2**64}}
    response = await client.post("/worker/transcription_status", headers=headers, data=json.dumps(report))
    [error] = (await response.json())["detail"]
    assert (error["loc"], error["type"]) == (["body", "new_chunk", "chunk_no"], "int_range")
    assert await world(client) == before


@pytest.mark.parametrize("path", [
    "/transcript/info?transcript_id=2147483648",
    "/transcript/info?transcript_id=-2147483649",
    "/transcript/segments?transcript_id=2147483648",
    "/transcript?task_id=-2147483649",
    "/transcript/export?task_id=2147483648&format=txt",
])
async def test_an_id_beyond_the_id_column_in_a_query_is_a_422(client, accounts, path):
    headers, _ = await admin_and_user(client, accounts)
    response = await client.get(path, headers=headers)
    assert response.status == 422, await response.text()
    assert (await response.json())["detail"][0]["type"] == "int_range"


@pytest.mark.parametrize("method, path", [
    ("PATCH", "/users/2147483648"),
    ("PATCH", "/auth/patch?user_id=-2147483649&secret_admin_token=" + ADMIN_TOKEN),
    ("DELETE", "/transcript?transcript_id=2147483648"),
    ("POST", "/transcript/cancel?transcript_id=2147483648"),
    ("POST", "/transcript/retry?transcript_id=-2147483649"),
])
async def test_an_id_beyond_the_id_column_changes_nothing(client, accounts, method, path):
    headers, _ = await admin_and_user(client, accounts)
    before = await world(client)
    response = await client.request(method, path, headers=headers, json={"can_interact": True})
    assert response.status == 422, await response.text()
    assert await world(client) == before


async def test_an_id_within_the_column_but_absent_is_still_a_404(client, accounts):
    headers, _ = await admin_and_user(client, accounts)
    for job_id in (2**31 - 1, -(2**31), -1, 0):
        response = await client.get(f"/transcript/info?transcript_id={job_id}", headers=headers)
        assert response.status == 404, (job_id, await response.text())


# -- multipart bodies cut short ---------------------------------------------------------------------------------

BOUNDARY = "xyzzy"


def multipart_body(wav: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"language\"\r\n\r\nen\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"audiofile\"; filename=\"a.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + wav + f"\r\n--{BOUNDARY}--\r\n".encode()


CUTS = {
    "inside the first part's headers": lambda body, wav: body.index(b"form-data; na"),
    "inside an option field": lambda body, wav: body.index(b"\r\n\r\nen") + 5,
    "inside the file part's disposition": lambda body, wav: body.index(b'filename="a') + 5,
    "between the file part's headers": lambda body, wav: body.index(b"Content-Type: au"),
    "right after the file part's headers": lambda body, wav: body.index(b"RIFF"),
    "inside the file": lambda body, wav: body.index(b"RIFF") + len(wav) // 2,
    "at the file's last byte": lambda body, wav: body.index(b"RIFF") + len(wav),
    "inside the closing boundary": lambda body, wav: len(body) - len(f"{BOUNDARY}--\r\n") + 2,
    "before the closing dashes": lambda body, wav: len(body) - len("--\r\n"),
}


@pytest.fixture
def wav(tmp_path) -> bytes:
    path = write_audio(tmp_path / "a.wav", numpy.concatenate([tone(300, 3.0), silence(0.3), noise(2.7)]))
    return path.read_bytes()


@pytest.mark.parametrize("cut", CUTS)
async def test_a_multipart_body_cut_short_anywhere_is_a_400_and_leaves_nothing(client, accounts, wav, cut):
    headers = await accounts.headers("alice", can_interact=True)
    body = multipart_body(wav)
    before = await world(client)
    response = await client.post("/upload-audiofile", data=body[:CUTS[cut](body, wav)],
                                 headers={**headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert response.status == 400, await response.text()
    detail = (await response.json())["detail"]
    assert "multipart" in detail and "closing boundary" in detail
    assert await world(client) == before


async def test_the_whole_multipart_body_is_taken(client, accounts, wav):
    """The control for the cuts above: the same body, whole, is an upload."""
    headers = await accounts.headers("alice", can_interact=True)
    response = await client.post("/upload-audiofile", data=multipart_body(wav),
                                 headers={**headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert response.status == 200, await response.text()


async def test_a_client_that_disconnects_mid_upload_leaves_no_row_and_no_file(client, accounts, wav):
    headers = await accounts.headers("alice", can_interact=True)
    body = multipart_body(wav * 3)
    audio_dir = client.app[CONFIG].audio_path
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    head = (f"POST /upload-audiofile HTTP/1.1\r\nHost: test\r\nAuthorization: {headers['Authorization']}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n")
    writer.write(head.encode() + body[:len(body) // 2])
    await writer.drain()
    await _until(lambda: audio_dir.exists() and any(audio_dir.iterdir()), "the upload to start being written")
    writer.close()
    await writer.wait_closed()
    await _until(lambda: not any(audio_dir.iterdir()), "the partial upload to be removed")
    assert await Transcription._meta.database.count(Transcription.select()) == 0


async def _until(condition, what: str, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def upload_named(disposition: str, wav: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"audiofile\"; {disposition}\r\n\r\n".encode()
            + wav + f"\r\n--{BOUNDARY}--\r\n".encode())


async def test_control_characters_in_an_uploads_encoded_name_are_dropped(client, accounts, wav):
    headers = await accounts.headers("alice", can_interact=True)
    response = await client.post("/upload-audiofile", data=upload_named("filename*=UTF-8''a%00b%0Ac%1B.wav", wav),
                                 headers={**headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["file"] == "abc.wav"
    assert (await Transcription.aget_by_id(body["task_id"])).filename == "abc.wav"


async def test_a_raw_nul_in_a_part_header_is_a_400_and_leaves_nothing(client, accounts, wav):
    headers = await accounts.headers("alice", can_interact=True)
    before = await world(client)
    response = await client.post("/upload-audiofile", data=upload_named('filename="a\x00b.wav"', wav),
                                 headers={**headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert response.status == 400, await response.text()
    assert await world(client) == before
