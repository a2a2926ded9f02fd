"""Live events: per-user delivery, replay after a reconnect, and who may open the WebSocket."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import aiohttp
import pytest
from conftest import events_stored

from lazyd.jobs.events import EventHub
from lazyd.web.keys import DAEMON


def test_events_are_numbered_and_replayed_per_user():
    """Each user has their own sequence: a number tells nothing of other users' activity."""
    hub = EventHub()
    first = hub.publish(1, "state", transcription_id=5, state="queued")
    others = hub.publish(2, "state", transcription_id=6, state="queued")
    second = hub.publish(1, "progress", transcription_id=5, done_secs=3.0)
    assert (first.seq, others.seq, second.seq) == (1, 1, 2)
    assert (hub.last_seq(1), hub.last_seq(2), hub.last_seq(3)) == (2, 1, 0)
    assert [event.seq for event in hub.missed(1, hub.stream, 0)] == [1, 2]
    assert [event.seq for event in hub.missed(1, hub.stream, 1)] == [2]
    assert hub.missed(1, hub.stream, 2) == []
    assert hub.missed(2, hub.stream, 2) is None  # a number from another user's stream is not theirs to replay


def test_one_users_burst_does_not_push_anothers_events_out_of_the_replay_buffer():
    hub = EventHub(capacity=2)
    kept = hub.publish(1, "state", transcription_id=5, state="queued")
    for n in range(5):
        hub.publish(2, "progress", done_secs=n)
    assert hub.missed(1, hub.stream, 0) == [kept]


def test_replay_is_refused_when_the_events_are_gone_or_the_stream_changed():
    hub = EventHub(capacity=2)
    for n in range(5):
        hub.publish(1, "progress", done_secs=n)
    assert hub.missed(1, hub.stream, 0) is None
    assert [event.seq for event in hub.missed(1, hub.stream, 3)] == [4, 5]
    assert hub.missed(1, "another-daemon-run", 3) is None
    assert hub.missed(1, hub.stream, 99) is None


async def test_a_subscriber_that_falls_behind_is_cut_off_not_waited_for():
    hub = EventHub(queue_size=3)
    with hub.subscribe(1) as queue:
        for n in range(5):
            hub.publish(1, "progress", done_secs=n)
        received = [queue.get_nowait() for _ in range(queue.qsize())]
    assert received[-1] is None
    assert [event.seq for event in received[:-1]] == [1, 2]


async def _connect(client, path: str, **kwargs):
    return await client.ws_connect(path, **kwargs)


async def test_the_socket_needs_a_valid_token(client):
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await _connect(client, "/ws")
    assert refused.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as forged:
        await _connect(client, "/ws?token=not.a.token")
    assert forged.value.status == 401


@pytest.fixture
def config(make_config, database_url):
    return make_config(database_url, {"server": {"trusted_origins": ["https://lectures.example"]}})


@pytest.mark.parametrize("origin", [
    "https://evil.example",
    "http://evil.example",  # sent with Host: evil.example, as a DNS-rebinding page would
    "https://127.0.0.1:{port}",  # the right host and port with the wrong scheme
    "http://127.0.0.1:1",
    "http://lectures.example",  # trusted only over https
    "null",
    "http://[::1",
])
async def test_a_foreign_origin_is_refused(client, accounts, origin):
    headers = await accounts.headers("alice")
    origin = origin.format(port=client.port)
    host = urlsplit(origin).netloc if origin.startswith("http://evil") else f"{client.host}:{client.port}"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await _connect(client, "/ws", headers={**headers, "Origin": origin, "Host": host})
    assert refused.value.status == 403


@pytest.mark.parametrize("origin", [
    "http://127.0.0.1:{port}", "http://localhost:{port}", "HTTP://LOCALHOST:{port}", "http://[::1]:{port}",
    "https://lectures.example", "https://lectures.example:443",
])
async def test_the_servers_own_and_trusted_origins_are_let_in(client, accounts, origin):
    headers = await accounts.headers("alice")
    ws = await _connect(client, "/ws", headers={**headers, "Origin": origin.format(port=client.port)})
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    await ws.close()


async def test_a_user_sees_only_their_own_events_and_can_catch_up(client, accounts):
    alice = await accounts.headers("alice")
    bob = await accounts.create("bobby")
    alice_id = (await (await client.get("/auth/info", headers=alice)).json())["id"]
    token = alice["Authorization"].split()[1]
    hub = client.app[DAEMON].events
    hub.publish(bob.id, "state", transcription_id=1, state="queued")
    await events_stored(hub, bob.id, 1)
    ws = await _connect(client, f"/ws?token={token}", headers={"Origin": f"http://{client.host}:{client.port}"})
    hello = await ws.receive_json()
    assert hello == {"type": "hello", "stream": hub.stream, "seq": 0}  # bob's activity does not show
    hub.publish(bob.id, "state", transcription_id=1, state="running")
    hub.publish(alice_id, "state", transcription_id=2, state="queued")
    event = await ws.receive_json(timeout=5)
    assert (event["seq"], event["transcription_id"], event["type"]) == (1, 2, "state")
    await ws.close()

    hub.publish(alice_id, "progress", transcription_id=2, done_secs=10.0)
    hub.publish(bob.id, "progress", transcription_id=1, done_secs=10.0)
    hub.publish(alice_id, "chunk", transcription_id=2, chunk_order=0, text="hello")
    await events_stored(hub, alice_id, 3)
    again = await _connect(client, f"/ws?stream={hub.stream}&since=1", headers=alice)
    replayed = [await again.receive_json(timeout=5), await again.receive_json(timeout=5)]
    assert [(item["type"], item["seq"]) for item in replayed] == [("progress", 2), ("chunk", 3)]
    await again.close()

    stale = await _connect(client, "/ws?stream=old&since=1", headers=alice)
    assert (await stale.receive_json(timeout=5))["type"] == "resync"
    await stale.close()


async def test_the_socket_is_closed_when_its_access_token_expires(client, accounts):
    import dataclasses
    from datetime import timedelta

    from lazyd.store import User
    from lazyd.web.keys import TOKENS

    await accounts.create("alice")
    alice = await User.aget(User.username == "alice")
    brief = dataclasses.replace(client.app[TOKENS], access_ttl=timedelta(seconds=2))  # exp is whole seconds
    token = brief.issue_pair(alice.id, alice.password_timestamp)["access_token"]
    ws = await client.ws_connect("/ws", headers={"Authorization": f"Bearer {token}"})
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    message = await ws.receive(timeout=10)
    assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 4001


@pytest.mark.parametrize("revoke", ["block", "password", "delete"])
async def test_the_socket_is_closed_soon_after_its_user_loses_access(client, accounts, monkeypatch, revoke):
    from lazyd.store import User
    from lazyd.web import ws as ws_module

    monkeypatch.setattr(ws_module, "ACCESS_RECHECK_SECS", 0.2)
    alice = await accounts.headers("alice")
    admin = await accounts.headers("rootadmin", role="admin")
    ws = await _connect(client, "/ws", headers=alice)
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    await asyncio.sleep(0.5)
    assert not ws.closed, "an unchanged user keeps the socket"
    user = await User.aget(User.username == "alice")
    if revoke == "delete":
        response = await client.delete("/auth/info", headers=alice)
    else:
        change = {"active": False} if revoke == "block" else {"password": "An0ther-passw0rd!"}
        response = await client.patch(f"/users/{user.id}", json=change, headers=admin)
    assert response.status in (200, 204), await response.text()
    message = await ws.receive(timeout=5)
    assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 4003
