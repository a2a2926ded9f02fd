"""Several daemons on one PostgreSQL database (issue 15): their live events are shared through it.

Skipped, saying why, where no PostgreSQL server answers at 127.0.0.1:5432.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from conftest import POSTGRES_URL, Accounts, admin_health, events_stored, fake_sections, postgres_schema
from daemon_processes import Daemon, Daemons, Database, fake_calls, info, login, transcript, wait_for_state
from daemon_processes import upload as upload_file
from pipeline_helpers import TONES, expected_text, tone_sequence, upload

from lazyd.jobs.shared_events import SharedEventHub
from lazyd.web import create_app
from lazyd.web.keys import DAEMON

pytestmark = pytest.mark.postgres


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    async with postgres_schema() as schema:
        yield f"{POSTGRES_URL}?search_path={schema}"


@pytest.fixture
async def hubs(database_url) -> AsyncIterator[Callable[[], SharedEventHub]]:
    """Event hubs of as many daemons as the test asks for, on the same database (migrated first)."""
    from lazyd.store import Store

    store = await Store.open(database_url)
    started: list[SharedEventHub] = []

    async def start(**options) -> SharedEventHub:
        hub = SharedEventHub(database_url, **options)
        await hub.start()
        started.append(hub)
        return hub

    yield start
    for hub in started:
        await hub.close()
    await store.close()


async def test_a_users_events_from_two_daemons_are_numbered_in_one_sequence_and_reach_both(hubs):
    first, second = await hubs(), await hubs()
    async with first.subscription(7) as on_first, second.subscription(7) as on_second:
        first.publish(7, "state", transcription_id=1, state="queued")
        await events_stored(first, 7, 1)
        second.publish(7, "state", transcription_id=1, state="in_progress")
        second.publish(8, "state", transcription_id=2, state="queued")  # another user's: not delivered here
        await events_stored(second, 7, 2)  # (what two daemons publish at the same moment has no order between them)
        first.publish(7, "segment", transcription_id=1, text="word " * 3000)  # far over NOTIFY's 8000 bytes
        got = {name: [await asyncio.wait_for(queue.get(), 5) for _ in range(3)]
               for name, queue in (("first", on_first), ("second", on_second))}
        assert on_first.empty() and on_second.empty()
    for events in got.values():
        assert [(event.seq, event.type) for event in events] == [(1, "state"), (2, "state"), (3, "segment")]
        assert events[2].data["text"] == "word " * 3000
    assert await second.latest(8) == 1


async def test_a_client_replays_on_one_daemon_what_another_published(hubs):
    first, second = await hubs(), await hubs()
    for n in range(4):
        first.publish(7, "progress", transcription_id=1, done_secs=float(n))
    await events_stored(first, 7, 4)
    replayed = await second.replay(7, first.stream, 2)
    assert [(event.seq, event.data["done_secs"]) for event in replayed] == [(3, 2.0), (4, 3.0)]
    assert await second.replay(7, first.stream, 4) == []
    assert await second.replay(7, first.stream, 9) is None  # a number this database never gave
    assert await second.replay(7, "a-single-daemons-stream", 2) is None


async def test_events_older_than_kept_are_not_replayed_but_say_resync(hubs):
    hub = await hubs(keep_secs=0.0)
    hub.publish(7, "progress", transcription_id=1, done_secs=1.0)
    hub.publish(7, "progress", transcription_id=1, done_secs=2.0)
    await events_stored(hub, 7, 2)
    await asyncio.sleep(0.05)
    assert await hub._log.prune(0.0) == 2
    assert await hub.replay(7, hub.stream, 0) is None
    assert await hub.replay(7, hub.stream, 2) == []  # nothing was missed


async def test_a_daemon_whose_listening_connection_breaks_reconnects_and_misses_nothing(hubs, caplog):
    import asyncpg

    listening, publishing = await hubs(), await hubs()
    async with listening.subscription(7) as queue:
        publishing.publish(7, "progress", transcription_id=1, done_secs=1.0)
        assert (await asyncio.wait_for(queue.get(), 5)).seq == 1
        admin = await asyncpg.connect(POSTGRES_URL)
        try:  # what a database restart or a network cut does to it
            await admin.execute("SELECT pg_terminate_backend($1)", listening._log._listener.get_server_pid())
        finally:
            await admin.close()
        publishing.publish(7, "progress", transcription_id=1, done_secs=2.0)  # while it is away
        publishing.publish(7, "progress", transcription_id=1, done_secs=3.0)
        received = [await asyncio.wait_for(queue.get(), 10) for _ in range(2)]
    assert [(event.seq, event.data["done_secs"]) for event in received] == [(2, 2.0), (3, 3.0)]
    assert "lost the connection that listens for other daemons' events" in caplog.text


# -- whole daemons -------------------------------------------------------------------------------------------

@pytest.fixture
def control(tmp_path: Path) -> Path:
    return tmp_path / "fake" / "control.json"


@pytest.fixture
async def api_node(aiohttp_client, make_config, database_url) -> TestClient:
    """A daemon that only serves the API (``[scheduler] enabled = false``)."""
    return await aiohttp_client(create_app(make_config(database_url, {"scheduler": {"node_name": "front",
                                                                                    "enabled": False}})))


@pytest.fixture
async def worker_node(aiohttp_client, make_config, database_url, control, tmp_path) -> TestClient:
    """A daemon on the same database that transcribes (the FAKE backend), with a model of its own."""
    models = tmp_path / "worker-models" / "lecture-tuned"
    models.mkdir(parents=True)
    for name in ("config.json", "model.bin"):
        (models / name).write_text("{}")
    sections = fake_sections(control)
    sections["scheduler"] = {**sections["scheduler"], "node_name": "gpu-1"}
    sections["transcription"] = {**sections["transcription"], "models_dir": str(models.parent)}
    return await aiohttp_client(create_app(make_config(database_url, sections)))


async def test_a_client_of_one_daemon_follows_a_job_another_daemon_runs(api_node, worker_node, tmp_path):
    headers = await Accounts(api_node).headers("alice", can_interact=True)
    socket = await api_node.ws_connect("/ws", headers=headers)
    hello = await socket.receive_json(timeout=5)
    response = await upload(api_node, headers, tone_sequence(tmp_path / "lecture.wav", TONES[:12]))
    job_id = (await response.json())["task_id"]

    events = []
    async with asyncio.timeout(60):
        while not (events and events[-1]["type"] == "state" and events[-1]["state"] == "completed"):
            events.append(await socket.receive_json())
    await socket.close()
    assert [event["seq"] for event in events] == list(range(hello["seq"] + 1, hello["seq"] + 1 + len(events)))
    assert [event["state"] for event in events if event["type"] == "state"] == ["queued", "in_progress", "completed"]
    assert {"segment", "progress", "chunk"} <= {event["type"] for event in events}
    assert all(event["transcription_id"] == job_id for event in events)
    assert api_node.app[DAEMON].scheduler is None and worker_node.app[DAEMON].scheduler is not None

    again = await worker_node.ws_connect(f"/ws?stream={hello['stream']}&since={events[2]['seq']}", headers=headers)
    replayed = [await again.receive_json(timeout=5) for _ in events[3:]]
    await again.close()
    assert replayed == events[3:]  # the other daemon replays the same events, numbers and all


# -- daemons as processes ------------------------------------------------------------------------------------

CLUSTER_JOBS = 30
CLUSTER_LEASE_SECS = 3.0


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Daemons]:
    """Daemons started as processes on one PostgreSQL schema and one data directory, each node with its own
    FAKE backend log (``fake-<node>/calls.log``)."""
    async with postgres_schema() as schema:
        database = Database(f"{POSTGRES_URL}?search_path={schema}", schema=schema)
        daemons = Daemons(tmp_path, database, tmp_path / "fake" / "control.json")
        daemons.add_user("alice")
        yield daemons
        daemons.clean_up()


async def start_node(cluster: Daemons, name: str, *, delay: float, http: bool = True) -> Daemon:
    control = cluster.tmp_path / f"fake-{name}" / "control.json"
    control.parent.mkdir(parents=True, exist_ok=True)
    control.write_text(json.dumps({"delay": delay}))
    return await cluster.start(ready="listening on" if http else "running without HTTP",
                               LAZYD_SCHEDULER__NODE_NAME=name, LAZYD_TRANSCRIPTION__MODEL=str(control),
                               LAZYD_SERVER__LISTEN=str(http).lower(),
                               LAZYD_SCHEDULER__LEASE_SECS=str(CLUSTER_LEASE_SECS),
                               LAZYD_LIMITS__ACTIVE_JOBS_PER_USER=str(CLUSTER_JOBS))


def calls_of(cluster: Daemons, name: str) -> list[str]:
    return fake_calls(cluster.tmp_path / f"fake-{name}" / "control.json")


async def test_three_daemons_share_thirty_jobs_each_chunk_done_once(cluster, tmp_path):
    first = await start_node(cluster, "node-a", delay=0.02)
    await start_node(cluster, "node-b", delay=0.02)
    await start_node(cluster, "node-c", delay=0.02, http=False)  # a worker-only node
    audio = tone_sequence(tmp_path / "lecture.wav", TONES[:12])  # two 8 s chunks
    async with first.session() as session:
        headers = await login(session)
        jobs = [await upload_file(session, headers, audio) for _ in range(CLUSTER_JOBS)]
        for job_id in jobs:
            await wait_for_state(session, headers, job_id, "completed", timeout=120)
        nodes = {(await info(session, headers, job_id))["node"] for job_id in jobs}
    assert nodes == {"node-a", "node-b", "node-c"}  # the work spread over every node
    for job_id in jobs:
        assert await cluster.database.chunk_counts(job_id) == {0: 1, 1: 1}
    calls = {name: len(calls_of(cluster, name)) for name in ("node-a", "node-b", "node-c")}
    assert sum(calls.values()) == 2 * CLUSTER_JOBS, calls  # no chunk decoded twice


async def five_chunks_running_on_node_a(cluster: Daemons, tmp_path: Path, committed: int) -> tuple[Daemon, int]:
    """node-a running a five-chunk job (1.6 s a chunk), once ``committed`` chunks of it are saved."""
    first = await start_node(cluster, "node-a", delay=0.2)
    async with first.session() as session:
        headers = await login(session)
        job_id = await upload_file(session, headers, tone_sequence(tmp_path / "lecture.wav", TONES + TONES))
        async with asyncio.timeout(30):
            while (await transcript(session, headers, job_id))["total"] < committed:
                await asyncio.sleep(0.05)
    return first, job_id


async def finished_on(daemon: Daemon, job_id: int) -> tuple[dict, str]:
    """The job once completed, as ``daemon`` sees it, and its text."""
    async with daemon.session() as session:
        headers = await login(session)
        finished = await wait_for_state(session, headers, job_id, "completed", timeout=60)
        chunks = (await transcript(session, headers, job_id))["transcriptions"]
    return finished, " ".join(chunk["transcription"] for chunk in chunks)


async def test_a_job_of_a_killed_daemon_is_finished_by_another_with_nothing_lost_or_doubled(cluster, tmp_path):
    first, job_id = await five_chunks_running_on_node_a(cluster, tmp_path, committed=2)
    first.process.send_signal(signal.SIGKILL)
    assert await first.exit_status() == -signal.SIGKILL
    done_on_a = len(calls_of(cluster, "node-a"))

    finished, text = await finished_on(await start_node(cluster, "node-b", delay=0.2), job_id)
    assert finished["node"] == "node-b"
    assert await cluster.database.chunk_counts(job_id) == {number: 1 for number in range(5)}
    assert text == expected_text(TONES + TONES)
    redone = len(calls_of(cluster, "node-a")) + len(calls_of(cluster, "node-b")) - 5
    assert redone <= 1 and done_on_a >= 2  # at most the chunk that was being decoded at the kill


async def test_a_daemon_frozen_past_its_lease_loses_the_job_and_writes_nothing_into_it(cluster, tmp_path):
    """A long pause (here SIGSTOP) or a network split: another daemon takes the job over once the lease
    has expired, and the frozen one, thawed, finds its lease gone and stops without writing."""
    first, job_id = await five_chunks_running_on_node_a(cluster, tmp_path, committed=1)
    first.process.send_signal(signal.SIGSTOP)  # its worker decodes on; the daemon can neither renew nor write
    try:
        second = await start_node(cluster, "node-b", delay=0.2)
        finished, _ = await finished_on(second, job_id)
    finally:
        first.process.send_signal(signal.SIGCONT)
    await first.wait_for_log(f"transcription {job_id}: lease lost", timeout=30)
    await asyncio.sleep(1.0)  # what the thawed daemon would write, it would have written by now
    _, text = await finished_on(second, job_id)
    assert finished["node"] == "node-b" and text == expected_text(TONES + TONES)
    assert await cluster.database.chunk_counts(job_id) == {number: 1 for number in range(5)}
    assert (await cluster.database.job(job_id))["current_state"] == "completed"


async def test_health_shows_an_admin_which_daemon_can_take_what(api_node, worker_node):
    from lazyd.store import Transcription

    alice = await Accounts(api_node).create("alice")
    jobs = {model: await Transcription.acreate(creator=alice, audio_len_secs=30.0, chunk_size_secs=10.0,
                                               current_state="queued", requested_model=model)
            for model in ("lecture-tuned", "large-v3")}
    async with asyncio.timeout(10):
        while len((health := await admin_health(api_node))["nodes"]) < 2 or not health["nodes"][1]["models"]:
            await asyncio.sleep(0.1)
    nodes = {node["name"]: node for node in health["nodes"]}
    assert (nodes["front"]["api"], nodes["front"]["transcribes"], nodes["front"]["models"]) == (True, False, [])
    assert (nodes["gpu-1"]["transcribes"], nodes["gpu-1"]["backend"]) == (True, "fake")
    assert "lecture-tuned" in nodes["gpu-1"]["models"] and all(node["alive"] for node in nodes.values())
    assert health["unclaimable_models"] == ["large-v3"]
    async with asyncio.timeout(10):  # the worker took the job whose model it has, and only that one
        while (await Transcription.aget_by_id(jobs["lecture-tuned"].id)).current_state == "queued":
            await asyncio.sleep(0.1)
    assert (await Transcription.aget_by_id(jobs["lecture-tuned"].id)).node == "gpu-1"
    assert (await Transcription.aget_by_id(jobs["large-v3"].id)).current_state == "queued"
