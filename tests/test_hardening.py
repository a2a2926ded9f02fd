"""Findings of the adversarial probe (issue 17) that concern tokens, accounts and response headers; each
test failed on main before its fix. The inbox, file-mode and WebSocket findings have tests of their own."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone

import jwt
import pytest

from lazyd.store import User
from lazyd.web.keys import TOKENS
from world import snapshot


async def _signed(client, **claims: object) -> dict[str, str]:
    """A bearer header for a token signed with the server's own key, with ``claims`` over valid ones."""
    user = await User.aget(User.username == "alice")
    valid = {"user_id": user.id, "password_timestamp": user.password_timestamp, "token_type": "access",
             "exp": int((datetime.now(timezone.utc) + timedelta(minutes=5)).timestamp())}
    token = jwt.encode({**valid, **claims}, client.app[TOKENS].secret, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


# -- 6. token claims are type-checked ---------------------------------------------------------------------------

@pytest.mark.parametrize("claims", [{"user_id": 2**70}, {"user_id": -(2**70)}, {"user_id": 2**31},
                                    {"exp": "9999999999"}, {"exp": True}, {"password_timestamp": "1.0"}])
async def test_a_validly_signed_token_with_a_claim_of_the_wrong_type_or_range_is_a_401(client, accounts, claims):
    await accounts.create("alice")
    response = await client.get("/auth/info", headers=await _signed(client, **claims))
    assert response.status == 401, await response.text()
    assert await response.json() == {"detail": "Invalid or expired token"}


async def test_the_same_token_with_valid_claims_is_accepted(client, accounts):
    """The control for the cases above."""
    await accounts.create("alice")
    response = await client.get("/auth/info", headers=await _signed(client))
    assert response.status == 200


# -- 7. blocking revokes tokens ---------------------------------------------------------------------------------

async def test_a_token_issued_before_a_block_stays_void_after_the_unblock(client, accounts):
    admin = await accounts.headers("rootadmin", role="admin")
    alice = await accounts.headers("alice")
    user = await User.aget(User.username == "alice")
    for active in (False, True):
        response = await client.patch(f"/users/{user.id}", json={"active": active}, headers=admin)
        assert response.status == 200
    response = await client.get("/auth/info", headers=alice)
    assert response.status == 401
    assert await response.json() == {"detail": "Invalid or expired token"}
    assert (await client.get("/auth/info", headers=await accounts_login(accounts, "alice"))).status == 200


async def accounts_login(accounts, username: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {(await accounts.login(username))['access_token']}"}


async def test_changing_only_can_interact_keeps_the_users_tokens(client, accounts):
    admin = await accounts.headers("rootadmin", role="admin")
    alice = await accounts.headers("alice")
    user = await User.aget(User.username == "alice")
    assert (await client.patch(f"/users/{user.id}", json={"can_interact": True}, headers=admin)).status == 200
    assert (await client.get("/auth/info", headers=alice)).status == 200


# -- 11. accounts -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("look_alike", ["ADMINUSER", "AdminUser", "adminUSER"])
async def test_a_username_differing_only_in_case_is_refused(client, accounts, look_alike):
    await accounts.create("adminuser", role="admin")
    response = await client.post("/auth/register", json={"username": look_alike, "password": "Correct_horse1"})
    assert response.status == 409
    assert await response.json() == {"detail": f"User '{look_alike}' already exists"}
    assert await User._meta.database.count(User.select()) == 1


async def test_two_look_alike_registrations_at_the_same_moment_make_one_account(client):
    """Both pass the check before the insert (the password hash in between takes a while); the database's
    index on lower(username) refuses the second insert."""
    answers = await asyncio.gather(*(
        client.post("/auth/register", json={"username": name, "password": "Correct_horse1"})
        for name in ("racerone", "RACERONE", "RacerOne")))
    assert sorted(answer.status for answer in answers) == [201, 409, 409]
    assert await User._meta.database.count(User.select()) == 1


async def test_an_older_database_with_look_alikes_upgrades_and_keeps_both(database_url, caplog):
    from lazyd.store import Store, connect_database
    from lazyd.store.migrations import upgrade

    old = connect_database(database_url, pool_size=1)
    await old.run(upgrade, old, 4)
    for name in ("adminuser", "ADMINUSER"):
        await old.aexecute_sql(
            "INSERT INTO users (username, password, active, role, password_timestamp, can_interact, create_date, "
            f"update_date) VALUES ('{name}', 'x', TRUE, 'user', 1.0, FALSE, '2024-01-01', '2024-01-01')")
    await old.close_pool()
    store = await Store.open(database_url, pool_size=1)
    try:
        assert sorted(user.username for user in await store.db.list(User.select())) == ["ADMINUSER", "adminuser"]
    finally:
        await store.close()
    assert "differ only in case exist (adminuser)" in caplog.text


@pytest.mark.parametrize("change", [{"role": "user"}, {"active": False}])
async def test_the_last_admin_cannot_demote_or_block_themselves(client, accounts, change):
    admin = await accounts.headers("rootadmin", role="admin")
    me = await User.aget(User.username == "rootadmin")
    response = await client.patch(f"/users/{me.id}", json=change, headers=admin)
    assert response.status == 409
    assert "last active admin" in (await response.json())["detail"]
    after = await User.aget_by_id(me.id)
    assert (after.role, after.active) == ("admin", True)


async def test_an_admin_may_step_down_while_another_admin_remains(client, accounts):
    admin = await accounts.headers("rootadmin", role="admin")
    await accounts.create("otheradmin", role="admin")
    me = await User.aget(User.username == "rootadmin")
    response = await client.patch(f"/users/{me.id}", json={"role": "user"}, headers=admin)
    assert response.status == 200 and (await response.json())["role"] == "user"


# -- 11. integers in the query are ASCII digits -------------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["%201", "1%20", "%2B1", "1_0", "%D9%A1", "%EF%BC%91", "0x1", "1.0"])
async def test_an_integer_query_parameter_takes_ascii_digits_only(client, accounts, spelling):
    headers = await accounts.headers("alice")
    response = await client.get(f"/transcriptions?page={spelling}", headers=headers)
    assert response.status == 422, await response.text()
    [error] = (await response.json())["detail"]
    assert (error["loc"], error["type"]) == (["query", "page"], "int_parsing")


async def test_a_negative_integer_is_still_an_integer(client, accounts):
    headers = await accounts.headers("alice")
    response = await client.get("/transcript/info?transcript_id=-1", headers=headers)
    assert response.status == 404


# -- 11. headers ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method, path", [("GET", "/"), ("GET", "/no/such/route"), ("POST", "/auth/login")])
async def test_every_response_says_nosniff(client, method, path):
    response = await client.request(method, path, json={})
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_token_responses_are_not_stored(client, accounts):
    await accounts.create("alice")
    login = await client.post("/auth/login", json={"username": "alice", "password": "Correct_horse1"})
    refresh = await client.post("/auth/refresh", json={"refresh_token": (await login.json())["refresh_token"]})
    for response in (login, refresh):
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"


async def test_a_streamed_export_carries_a_request_id_and_nosniff(client, accounts):
    from test_transcriptions_api import make_job

    headers = await accounts.headers("alice")
    job = await make_job(await User.aget(User.username == "alice"), "completed", ("heat engines.",))
    response = await client.get(f"/transcript/export?task_id={job.id}&format=txt", headers=headers)
    assert response.status == 200 and "heat engines" in await response.text()
    assert response.headers["X-Request-ID"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


# -- 9. a stalled body ----------------------------------------------------------------------------------------------

@pytest.fixture
def config(make_config, database_url):
    """A short idle limit for request bodies, so that a stall is seen in a second."""
    return make_config(database_url, {"server": {"body_idle_timeout_secs": 1.0}})


async def _send_and_stall(client, head: str, body_start: bytes) -> tuple[bytes, float]:
    """Send the request line, headers and part of the body, then nothing: the answer, and how long it took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    started = time.monotonic()
    writer.write(head.encode("latin-1") + b"\r\n" + body_start)
    await writer.drain()
    try:
        async with asyncio.timeout(30):
            answer = await reader.readuntil(b"}")
            took = time.monotonic() - started
    finally:
        writer.close()
    return answer, took


async def test_an_upload_that_stalls_halfway_is_a_408_and_leaves_no_file(client, accounts, config):
    headers = await accounts.headers("alice", can_interact=True)
    boundary = "stall"
    body_start = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"audiofile\"; filename=\"talk.wav\"\r\n"
                  "Content-Type: audio/wav\r\n\r\n").encode() + b"RIFF" + b"\0" * 100_000
    head = (f"POST /upload-audiofile HTTP/1.1\r\nHost: localhost\r\nAuthorization: {headers['Authorization']}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 5000000\r\n")
    before = await snapshot(config.data_path)
    answer, took = await _send_and_stall(client, head, body_start)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"detail": "The request body stalled: nothing arrived for 1 s"' in answer
    assert took < 5
    assert await snapshot(config.data_path) == before  # no row, and the partly written file is gone


async def test_a_json_body_that_stalls_is_a_408(client):
    head = ("POST /auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            "Content-Length: 500\r\n")
    answer, _took = await _send_and_stall(client, head, b'{"username": "ali')
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


# -- 11. a request aiohttp cannot parse -----------------------------------------------------------------------------

@pytest.mark.parametrize(("head", "status", "detail"), [
    ("GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: " + "a" * 9000 + "\r\n", 431,
     "The request line or a header is longer than 8190 bytes"),
    ("GET /" + "a" * 9000 + " HTTP/1.1\r\nHost: localhost\r\n", 431,
     "The request line or a header is longer than 8190 bytes"),
    ("GET /health HTTP/1.1\r\nHost: localhost\r\n" + "".join(f"X-{n}: b\r\n" for n in range(200)), 400,
     "Too many headers received"),
])
async def test_a_request_aiohttp_cannot_parse_is_answered_in_the_apis_error_shape(client, head, status, detail):
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(head.encode() + b"\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert int(status_line.split()[1]) == status
    assert b"Content-Type: application/json" in headers and b"X-Content-Type-Options: nosniff" in headers
    assert json.loads(body) == {"detail": detail}

