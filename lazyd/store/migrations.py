"""Versioned schema migrations that upgrade an existing database in place.

Each migration is a plain function of the database, run inside a greenlet (``db.run``) so that peewee's
synchronous schema API works over the async drivers. A migration never imports the current models: it
describes the tables as they were at its version, so an old database always upgrades the same way.
All pending steps run in one transaction together with the rows recording them, under a lock that keeps two
daemons starting at once from applying the same step twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from .models import JSONField, SchemaVersion, segment_rows, utcnow

log = logging.getLogger(__name__)

_PG_MIGRATION_LOCK = 0x6C617A7964  # "lazyd": the advisory lock key shared by every daemon.


class SchemaTooNew(RuntimeError):
    """The database was upgraded by a newer lazyd than this one."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[peewee.Database], None]


def _v1_seed_tables(db: peewee.Database) -> None:
    """The lazy-lecture seed's three tables, with the seed's fields only."""

    class Base(peewee.Model):
        id = peewee.AutoField()
        create_date = peewee.DateTimeField(default=utcnow, index=True)
        update_date = peewee.DateTimeField(default=utcnow, index=True)

        class Meta:
            database = db

    class User(Base):
        username = peewee.CharField(max_length=64, unique=True)
        password = peewee.CharField(max_length=128)
        active = peewee.BooleanField(default=True)
        role = peewee.CharField(max_length=16, default="user")
        password_timestamp = peewee.DoubleField()
        can_interact = peewee.BooleanField(default=False)

        class Meta:
            table_name = "users"

    class Transcription(Base):
        creator = peewee.ForeignKeyField(User, column_name="creator_id", on_delete="CASCADE")
        audio_len_secs = peewee.DoubleField()
        chunk_size_secs = peewee.DoubleField()
        current_state = peewee.CharField(max_length=32, index=True)
        error_count = peewee.IntegerField(default=0)

        class Meta:
            table_name = "transcriptions"

    class TranscriptionChunk(Base):
        transcription = peewee.ForeignKeyField(Transcription, column_name="transcript_id", on_delete="CASCADE")
        chunk_no = peewee.IntegerField()
        text = peewee.TextField(default="")

        class Meta:
            table_name = "transcription_chunks"

    db.create_tables([User, Transcription, TranscriptionChunk])


def _v2_pipeline_fields(db: peewee.Database) -> None:
    """What lazyd's pipeline needs beyond the seed: the stored audio, the chunk plan, leases, segments."""
    migrator = SchemaMigrator.from_database(db)
    transcription_columns = {
        "source": peewee.CharField(max_length=16, default="upload"),
        "filename": peewee.CharField(max_length=512, default=""),
        "audio_path": peewee.CharField(max_length=1024, default=""),
        "audio_sha256": peewee.CharField(max_length=64, default=""),
        "audio_size": peewee.BigIntegerField(default=0),
        "chunk_plan": JSONField(default=list),
        "options": JSONField(default=dict),
        "model_name": peewee.CharField(max_length=256, default=""),
        "last_error": peewee.TextField(default=""),
        "lease_owner": peewee.CharField(max_length=128, default=""),
        "lease_expires_at": peewee.DateTimeField(null=True),
        "next_attempt_at": peewee.DateTimeField(null=True),
    }
    chunk_columns = {
        "start_secs": peewee.DoubleField(default=0.0),
        "end_secs": peewee.DoubleField(default=0.0),
        "segments": JSONField(default=list),
    }
    migrate(
        *(migrator.add_column("transcriptions", name, column) for name, column in transcription_columns.items()),
        *(migrator.add_column("transcription_chunks", name, column) for name, column in chunk_columns.items()),
        migrator.add_index("transcriptions", ("audio_sha256",)),
        migrator.add_index("transcriptions", ("creator_id", "create_date")),
        migrator.add_index("transcription_chunks", ("transcript_id", "chunk_no"), unique=True),
    )


def _v3_inbox_files(db: peewee.Database) -> None:
    """Files taken from watched folders, linked to their transcriptions."""

    class Transcription(peewee.Model):
        id = peewee.AutoField()

        class Meta:
            database = db
            table_name = "transcriptions"

    class InboxFile(peewee.Model):
        id = peewee.AutoField()
        create_date = peewee.DateTimeField(default=utcnow, index=True)
        update_date = peewee.DateTimeField(default=utcnow, index=True)
        inbox = peewee.CharField(max_length=1024)
        name = peewee.CharField(max_length=512)
        sha256 = peewee.CharField(max_length=64)
        size = peewee.BigIntegerField()
        mtime = peewee.DoubleField()
        transcription = peewee.ForeignKeyField(Transcription, null=True, column_name="transcription_id",
                                               on_delete="SET NULL")
        status = peewee.CharField(max_length=16, index=True)
        error = peewee.TextField(default="")

        class Meta:
            database = db
            table_name = "inbox_files"
            indexes = ((("inbox", "name"), False),)

    db.create_tables([InboxFile])


def _v4_inbox_outbox_names(db: peewee.Database) -> None:
    """The name a taken file's transcripts get in the outbox, chosen once so that no two files share one."""
    migrator = SchemaMigrator.from_database(db)
    migrate(migrator.add_column("inbox_files", "outbox_stem", peewee.CharField(max_length=512, default="")))


USERNAME_ANY_CASE_INDEX = "users_username_any_case"


def _v5_usernames_unique_in_any_case(db: peewee.Database) -> None:
    """One account per name in any mix of case, kept by the database: the check before the insert alone
    lets two registrations at once both pass. An older database that already holds look-alikes keeps
    them (renaming accounts is an admin's decision) and goes without the index, with a warning."""
    look_alikes = db.execute_sql(
        "SELECT lower(username) FROM users GROUP BY lower(username) HAVING COUNT(*) > 1 ORDER BY 1").fetchall()
    if look_alikes:
        log.warning("users whose names differ only in case exist (%s): new look-alikes are still refused, but "
                    "two registrations at the same moment could add one; rename or delete the duplicates",
                    ", ".join(row[0] for row in look_alikes))
        return
    db.execute_sql(f"CREATE UNIQUE INDEX {USERNAME_ANY_CASE_INDEX} ON users (lower(username))")


def _v6_detected_languages(db: peewee.Database) -> None:
    """The language each chunk was decoded in, and the one spoken over most of a transcription."""
    migrator = SchemaMigrator.from_database(db)
    migrate(*(step for table in ("transcriptions", "transcription_chunks") for step in (
        migrator.add_column(table, "language", peewee.CharField(max_length=16, default="")),
        migrator.add_column(table, "language_probability", peewee.DoubleField(null=True)))))


def _v7_api_keys(db: peewee.Database) -> None:
    """Per-user API keys, looked up by prefix, kept as a keyed hash."""

    class User(peewee.Model):
        id = peewee.AutoField()

        class Meta:
            database = db
            table_name = "users"

    class ApiKey(peewee.Model):
        id = peewee.AutoField()
        create_date = peewee.DateTimeField(default=utcnow, index=True)
        update_date = peewee.DateTimeField(default=utcnow, index=True)
        user = peewee.ForeignKeyField(User, column_name="user_id", on_delete="CASCADE")
        name = peewee.CharField(max_length=100)
        prefix = peewee.CharField(max_length=16, unique=True)
        digest = peewee.CharField(max_length=64)
        last_used_at = peewee.DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "api_keys"

    db.create_tables([ApiKey])


SEARCH_INDEX = "segment_search"
"""SQLite's FTS5 index over ``segment_texts.text`` (PostgreSQL indexes the column's ``tsvector`` instead)."""


def _v8_segment_search(db: peewee.Database) -> None:
    """Every segment's text in a table of its own, indexed for full-text search, filled from the chunks
    already stored. SQLite keeps an FTS5 index in step through triggers; PostgreSQL a GIN index."""

    class Transcription(peewee.Model):
        id = peewee.AutoField()

        class Meta:
            database = db
            table_name = "transcriptions"

    class SegmentText(peewee.Model):
        id = peewee.AutoField()
        transcription = peewee.ForeignKeyField(Transcription, column_name="transcript_id", on_delete="CASCADE")
        chunk_no = peewee.IntegerField()
        segment_no = peewee.IntegerField()
        start_secs = peewee.DoubleField()
        end_secs = peewee.DoubleField()
        text = peewee.TextField()

        class Meta:
            database = db
            table_name = "segment_texts"
            indexes = ((("transcription", "chunk_no", "segment_no"), True),)

    db.create_tables([SegmentText])
    if isinstance(db, peewee.PostgresqlDatabase):
        db.execute_sql("CREATE INDEX segment_texts_search ON segment_texts USING GIN (to_tsvector('simple', text))")
    else:
        _sqlite_search_index(db)
    rows = db.execute_sql("SELECT transcript_id, chunk_no, start_secs, end_secs, text, segments "
                          "FROM transcription_chunks ORDER BY transcript_id, chunk_no").fetchall()
    for job_id, chunk_no, start, end, text, segments in rows:
        for number, seg_start, seg_end, seg_text in segment_rows(start, end, text, segments):
            SegmentText.create(transcription=job_id, chunk_no=chunk_no, segment_no=number, start_secs=seg_start,
                               end_secs=seg_end, text=seg_text)


def _sqlite_search_index(db: peewee.Database) -> None:
    db.execute_sql(f"CREATE VIRTUAL TABLE {SEARCH_INDEX} USING fts5(text, content='segment_texts', "
                   "content_rowid='id')")
    db.execute_sql(f"CREATE TRIGGER segment_texts_added AFTER INSERT ON segment_texts BEGIN "
                   f"INSERT INTO {SEARCH_INDEX}(rowid, text) VALUES (new.id, new.text); END")
    db.execute_sql(f"CREATE TRIGGER segment_texts_removed AFTER DELETE ON segment_texts BEGIN "
                   f"INSERT INTO {SEARCH_INDEX}({SEARCH_INDEX}, rowid, text) VALUES ('delete', old.id, old.text); END")
    db.execute_sql(f"CREATE TRIGGER segment_texts_changed AFTER UPDATE ON segment_texts BEGIN "
                   f"INSERT INTO {SEARCH_INDEX}({SEARCH_INDEX}, rowid, text) VALUES ('delete', old.id, old.text); "
                   f"INSERT INTO {SEARCH_INDEX}(rowid, text) VALUES (new.id, new.text); END")


def _v9_segment_corrections(db: peewee.Database) -> None:
    """A person's correction of a segment's text (kept beside the machine's, which stays in the chunk) and a
    free-text label. Plain ``ADD COLUMN``: peewee's SQLite migrator rebuilds the table for a NOT NULL column,
    which would drop the triggers that keep the search index in step."""
    db.execute_sql("ALTER TABLE segment_texts ADD COLUMN edited BOOLEAN NOT NULL DEFAULT FALSE")
    db.execute_sql("ALTER TABLE segment_texts ADD COLUMN label VARCHAR(200) NOT NULL DEFAULT ''")


def _v10_live_events(db: peewee.Database) -> None:
    """Live events shared by every daemon on one PostgreSQL database (:mod:`lazyd.store.event_log`),
    numbered per user; a daemon on SQLite keeps its events in memory and leaves these empty."""

    class LiveEvent(peewee.Model):
        id = peewee.BigAutoField()
        user_id = peewee.IntegerField()
        seq = peewee.BigIntegerField()
        type = peewee.CharField(max_length=32)
        data = peewee.TextField()
        created_at = peewee.DateTimeField(index=True)

        class Meta:
            database = db
            table_name = "live_events"
            indexes = ((("user_id", "seq"), True),)

    class LiveEventCounter(peewee.Model):
        user_id = peewee.IntegerField(primary_key=True)
        seq = peewee.BigIntegerField()

        class Meta:
            database = db
            table_name = "live_event_counters"

    db.create_tables([LiveEvent, LiveEventCounter])


def _v11_job_node(db: peewee.Database) -> None:
    """Which daemon ran a job's latest attempt, for people (the lease says who holds it now)."""
    db.execute_sql("ALTER TABLE transcriptions ADD COLUMN node VARCHAR(128) NOT NULL DEFAULT ''")


def _v12_nodes(db: peewee.Database) -> None:
    """The daemons sharing the database and what each can run; the model a job names, for the claim."""

    class Node(peewee.Model):
        name = peewee.CharField(max_length=128, primary_key=True)
        api = peewee.BooleanField(default=True)
        transcribes = peewee.BooleanField(default=False)
        backend = peewee.CharField(max_length=64, default="")
        models = peewee.TextField(default="[]")
        version = peewee.CharField(max_length=32, default="")
        started_at = peewee.DateTimeField()
        seen_at = peewee.DateTimeField()

        class Meta:
            database = db
            table_name = "nodes"

    db.create_tables([Node])
    db.execute_sql("ALTER TABLE transcriptions ADD COLUMN requested_model VARCHAR(256) NOT NULL DEFAULT ''")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "seed tables: users, transcriptions, transcription_chunks", _v1_seed_tables),
    Migration(2, "pipeline fields: audio file, chunk plan, leases, timestamped segments", _v2_pipeline_fields),
    Migration(3, "inbox files", _v3_inbox_files),
    Migration(4, "inbox files: the outbox name each one's transcripts get", _v4_inbox_outbox_names),
    Migration(5, "user names unique in any mix of case", _v5_usernames_unique_in_any_case),
    Migration(6, "detected languages of transcriptions and chunks", _v6_detected_languages),
    Migration(7, "API keys", _v7_api_keys),
    Migration(8, "segment texts, indexed for full-text search", _v8_segment_search),
    Migration(9, "corrections and labels of segments", _v9_segment_corrections),
    Migration(10, "live events shared by the daemons of one database", _v10_live_events),
    Migration(11, "the node that ran a job", _v11_job_node),
    Migration(12, "the daemons of a database and the models they run", _v12_nodes),
)
LATEST_VERSION = MIGRATIONS[-1].version


def _version_table(db: peewee.Database) -> type[peewee.Model]:
    """``schema_version`` bound to ``db`` alone, so that upgrades of two databases never share a binding."""

    class Version(peewee.Model):
        version = peewee.IntegerField(primary_key=True)
        description = peewee.CharField(max_length=256)
        applied_at = peewee.DateTimeField(default=utcnow)

        class Meta:
            database = db
            table_name = SchemaVersion._meta.table_name

    return Version


def current_version(db: peewee.Database) -> int:
    """The highest applied migration, 0 for an empty database. Call inside ``db.run``."""
    if not db.table_exists(SchemaVersion._meta.table_name):
        return 0
    versions = _version_table(db)
    return versions.select(peewee.fn.MAX(versions.version)).scalar() or 0


def upgrade(db: peewee.Database, target: int = LATEST_VERSION) -> list[int]:
    """Apply every migration above the current version up to ``target``; return those applied.

    All pending steps run in one transaction under a cross-process lock, so a failed upgrade leaves the
    database as it was and two daemons starting together apply each step once. Synchronous peewee code:
    call it through ``await db.run(upgrade, db)``.
    """
    versions = _version_table(db)
    with _foreign_keys_deferred(db), _locked_transaction(db):
        versions.create_table(safe=True)
        found = current_version(db)
        if found > LATEST_VERSION:
            raise SchemaTooNew(
                f"the database is at schema version {found}, newer than this lazyd knows ({LATEST_VERSION}); "
                "upgrade lazyd"
            )
        pending = [m for m in MIGRATIONS if found < m.version <= target]
        for migration in pending:
            log.info("applying schema migration %d: %s", migration.version, migration.description)
            migration.apply(db)
            versions.create(version=migration.version, description=migration.description)
        return [m.version for m in pending]


@contextmanager
def _foreign_keys_deferred(db: peewee.Database) -> Iterator[None]:
    """SQLite rebuilds a table to change a column; with foreign keys on, dropping the old copy would
    cascade-delete every row that references it. SQLite's documented procedure: switch them off around
    the change (outside any transaction), then check that nothing dangles."""
    if not isinstance(db, peewee.SqliteDatabase):
        yield
        return
    db.execute_sql("PRAGMA foreign_keys = OFF")
    try:
        yield
        if dangling := db.execute_sql("PRAGMA foreign_key_check").fetchall():
            raise RuntimeError(f"schema migration left dangling foreign keys: {dangling[:5]}")
    finally:
        db.execute_sql("PRAGMA foreign_keys = ON")


@contextmanager
def _locked_transaction(db: peewee.Database) -> Iterator[None]:
    """A write transaction that only one process at a time can hold."""
    if isinstance(db, peewee.PostgresqlDatabase):
        with db.atomic():
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_MIGRATION_LOCK,))
            yield
    else:
        with db.atomic(lock_type="IMMEDIATE"):
            yield
