"""The store on SQLite and PostgreSQL: migrations upgrade old databases in place and keep their rows."""

from __future__ import annotations

import asyncio

import peewee
import pytest

from lazyd.store import LATEST_VERSION, SchemaTooNew, Store, Transcription, TranscriptionChunk, User, connect_database
from lazyd.store.migrations import SchemaVersion, upgrade
from lazyd.search import search
from lazyd.store.models import MODELS


async def _open_at_version(url: str, version: int) -> peewee.Database:
    db = connect_database(url, pool_size=2)
    await db.run(upgrade, db, version)
    return db


async def test_a_new_database_is_created_at_the_latest_version(store):
    assert await store.schema_version() == LATEST_VERSION
    assert await store.healthy()


async def test_a_seed_era_database_is_upgraded_in_place_keeping_its_rows(database_url):
    old = await _open_at_version(database_url, 1)
    await old.aexecute_sql(
        "INSERT INTO users (username, password, active, role, password_timestamp, can_interact, create_date, "
        "update_date) VALUES ('alice', 'x', %s, 'user', 1.5, %s, '2024-01-01 10:00:00', '2024-01-01 10:00:00')"
        .replace("%s", "?" if "sqlite" in database_url else "%s"), (True, True))
    await old.aexecute_sql(
        "INSERT INTO transcriptions (creator_id, audio_len_secs, chunk_size_secs, current_state, error_count, "
        "create_date, update_date) VALUES (1, 1800, 900, 'completed', 0, '2024-01-01 10:00:00', "
        "'2024-01-01 10:00:00')")
    await old.aexecute_sql(
        "INSERT INTO transcription_chunks (transcript_id, chunk_no, text, create_date, update_date) "
        "VALUES (1, 0, 'first chunk', '2024-01-01 10:00:00', '2024-01-01 10:00:00')")
    await old.close_pool()

    store = await Store.open(database_url, pool_size=2)
    try:
        assert await store.schema_version() == LATEST_VERSION
        alice = await User.aget(User.username == "alice")
        assert (alice.password_timestamp, alice.can_interact) == (1.5, True)
        chunk = await TranscriptionChunk.aget(TranscriptionChunk.chunk_no == 0)
        assert (chunk.text, chunk.segments, chunk.start_secs) == ("first chunk", [], 0.0)
        transcription = await Transcription.aget_by_id(1)
        assert (transcription.chunk_plan, transcription.options, transcription.audio_path) == ([], {}, "")
    finally:
        await store.close()


async def test_upgrading_twice_applies_nothing_the_second_time(database_url):
    db = await _open_at_version(database_url, LATEST_VERSION)
    try:
        assert await db.run(upgrade, db) == []
    finally:
        await db.close_pool()


async def test_two_daemons_starting_at_once_apply_each_migration_once(database_url):
    """Both open the new database (on SQLite, both switch it to WAL) and each step is applied once: a
    second application would fail on schema_version's primary key."""
    stores = await asyncio.gather(*(Store.open(database_url, pool_size=2) for _ in range(3)))
    try:
        applied = await stores[0].db.aexecute_sql("SELECT version FROM schema_version ORDER BY version")
        assert [row[0] for row in applied.fetchall()] == list(range(1, LATEST_VERSION + 1))
    finally:
        await asyncio.gather(*(store.close() for store in stores))


async def test_a_database_from_a_newer_lazyd_is_refused(database_url):
    store = await Store.open(database_url, pool_size=2)
    await SchemaVersion.acreate(version=LATEST_VERSION + 1, description="from the future")
    await store.close()
    with pytest.raises(SchemaTooNew, match="upgrade lazyd"):
        await Store.open(database_url, pool_size=2)


async def test_chunk_numbers_are_unique_per_transcription(store):
    user = await User.acreate(username="alice", password="x", password_timestamp=1.0)
    job = await Transcription.acreate(creator=user, audio_len_secs=10, chunk_size_secs=900, current_state="queued")
    await TranscriptionChunk.acreate(transcription=job, chunk_no=0, text="a")
    with pytest.raises(peewee.IntegrityError):
        await TranscriptionChunk.acreate(transcription=job, chunk_no=0, text="b")


async def test_json_fields_round_trip_unicode(store):
    user = await User.acreate(username="alice", password="x", password_timestamp=1.0)
    plan = [[0.0, 899.5], [899.5, 1800.0]]
    job = await Transcription.acreate(creator=user, audio_len_secs=1800, chunk_size_secs=900,
                                      current_state="queued", chunk_plan=plan, options={"prompt": "Schrödinger"})
    again = await Transcription.aget_by_id(job.id)
    assert again.chunk_plan == plan and again.options == {"prompt": "Schrödinger"}


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    store = await Store.open(f"sqlite:///{tmp_path / 'x.sqlite3'}", pool_size=1)
    try:
        assert (await store.db.aexecute_sql("PRAGMA journal_mode")).fetchone()[0] == "wal"
        assert (await store.db.aexecute_sql("PRAGMA foreign_keys")).fetchone()[0] == 1
    finally:
        await store.close()


def test_every_model_is_bound_by_the_store():
    assert {model._meta.table_name for model in MODELS} == {
        "users", "transcriptions", "transcription_chunks", "segment_texts", "inbox_files", "api_keys", "nodes", "schema_version"}


async def test_a_postgresql_server_that_refuses_the_connection_is_unhealthy_not_an_error():
    from conftest import _postgres_problem

    if problem := await _postgres_problem():
        pytest.skip(f"skipping the PostgreSQL run: {problem}")
    url = "postgresql://postgres@127.0.0.1:5432/lazyd_no_such_database"
    store = Store(connect_database(url, pool_size=1), url)
    assert await store.healthy() is False
    await store.close()


async def test_the_chunks_of_an_older_database_become_searchable(database_url):
    """A database from before the search index (schema 7): its stored chunks are indexed by the upgrade."""
    store = await Store.open(database_url, pool_size=2)
    alice = await User.acreate(username="alice", password="x", password_timestamp=1.5)
    job = await Transcription.acreate(creator=alice, audio_len_secs=60, chunk_size_secs=30, current_state="completed")
    await TranscriptionChunk.acreate(transcription=job, chunk_no=0, text="Heat engines. Work.", start_secs=0,
                                     end_secs=30, segments=[{"start": 1.0, "end": 3.0, "text": " Heat engines."},
                                                            {"start": 3.0, "end": 5.0, "text": " Work."}])
    await TranscriptionChunk.acreate(transcription=job, chunk_no=1, text="A worker reported this without timings",
                                     start_secs=30, end_secs=60)
    for statement in ("DROP TABLE IF EXISTS segment_search", "DROP TABLE segment_texts",  # back to schema 7
                      "DROP TABLE live_events", "DROP TABLE live_event_counters", "DROP TABLE nodes",
                      "ALTER TABLE transcriptions DROP COLUMN node",
                      "ALTER TABLE transcriptions DROP COLUMN requested_model",
                      "DELETE FROM schema_version WHERE version >= 8"):
        await store.db.aexecute_sql(statement)
    await store.close()

    store = await Store.open(database_url, pool_size=2)
    try:
        [engines], _ = await search(store, alice.id, "engines", 1, 10)
        assert (engines.chunk_no, engines.start, engines.end, engines.text) == (0, 1.0, 3.0, "Heat engines.")
        [untimed], _ = await search(store, alice.id, "timings", 1, 10)
        assert (untimed.chunk_no, untimed.start, untimed.end) == (1, 30.0, 60.0)
    finally:
        await store.close()
