"""The current shape of lazyd's tables, as peewee models.

Migrations (``migrations.py``) create and upgrade the tables; these classes describe the newest schema and
are bound to the open database by :class:`lazyd.store.Store`. Table and column names keep the seed's field
names where the seed API exposes them (``creator_id``, ``transcript_id``, ``chunk_no``).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import peewee
from playhouse.pwasyncio import AsyncModel


def utcnow() -> datetime:
    """Naive UTC, the form every timestamp column holds (portable across SQLite and PostgreSQL)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class JSONField(peewee.TextField):
    """JSON kept as text, so that SQLite and PostgreSQL store it the same way."""

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)


class BaseModel(AsyncModel):
    id = peewee.AutoField()
    create_date = peewee.DateTimeField(default=utcnow, index=True)
    update_date = peewee.DateTimeField(default=utcnow, index=True)


class User(BaseModel):
    username = peewee.CharField(max_length=64, unique=True)
    password = peewee.CharField(max_length=128)
    active = peewee.BooleanField(default=True)
    role = peewee.CharField(max_length=16, default="user")
    password_timestamp = peewee.DoubleField()
    can_interact = peewee.BooleanField(default=False)

    class Meta:
        table_name = "users"


class Transcription(BaseModel):
    creator = peewee.ForeignKeyField(User, column_name="creator_id", backref="transcriptions", on_delete="CASCADE")
    audio_len_secs = peewee.DoubleField()
    chunk_size_secs = peewee.DoubleField()
    current_state = peewee.CharField(max_length=32, index=True)
    error_count = peewee.IntegerField(default=0)
    source = peewee.CharField(max_length=16, default="upload")
    filename = peewee.CharField(max_length=512, default="")
    audio_path = peewee.CharField(max_length=1024, default="")
    audio_sha256 = peewee.CharField(max_length=64, default="", index=True)
    audio_size = peewee.BigIntegerField(default=0)
    chunk_plan = JSONField(default=list)
    options = JSONField(default=dict)
    model_name = peewee.CharField(max_length=256, default="")
    language = peewee.CharField(max_length=16, default="")
    """Detected over most of the audio ("" before any chunk says); each chunk keeps its own."""
    language_probability = peewee.DoubleField(null=True)
    last_error = peewee.TextField(default="")
    lease_owner = peewee.CharField(max_length=128, default="")
    node = peewee.CharField(max_length=128, default="")
    """The daemon that ran (or runs) the job's latest attempt (``[scheduler] node_name``)."""
    requested_model = peewee.CharField(max_length=256, default="")
    """The model the job names, which only daemons that have it claim ("" for any daemon's own)."""
    lease_expires_at = peewee.DateTimeField(null=True)
    next_attempt_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "transcriptions"


class TranscriptionChunk(BaseModel):
    transcription = peewee.ForeignKeyField(
        Transcription, column_name="transcript_id", backref="chunks", on_delete="CASCADE"
    )
    chunk_no = peewee.IntegerField()
    text = peewee.TextField(default="")
    start_secs = peewee.DoubleField(default=0.0)
    end_secs = peewee.DoubleField(default=0.0)
    segments = JSONField(default=list)
    language = peewee.CharField(max_length=16, default="")
    language_probability = peewee.DoubleField(null=True)

    class Meta:
        table_name = "transcription_chunks"
        indexes = ((("transcription", "chunk_no"), True),)


class SegmentText(AsyncModel):
    """One segment's text, for full-text search (:mod:`lazyd.search`); kept in step with the chunks."""

    id = peewee.AutoField()
    transcription = peewee.ForeignKeyField(Transcription, column_name="transcript_id", backref="segment_texts",
                                           on_delete="CASCADE")
    chunk_no = peewee.IntegerField()
    segment_no = peewee.IntegerField()
    start_secs = peewee.DoubleField()
    end_secs = peewee.DoubleField()
    text = peewee.TextField()
    """What is searched and exported: the machine's text, or a person's correction of it (``edited``)."""
    edited = peewee.BooleanField(default=False)
    label = peewee.CharField(max_length=200, default="")

    class Meta:
        table_name = "segment_texts"
        indexes = ((("transcription", "chunk_no", "segment_no"), True),)


def segment_rows(start: float, end: float, text: str,
                 segments: str | list | None) -> list[tuple[int, float, float, str]]:
    """A chunk's segments that hold text as ``(number in the chunk, start, end, text)``; a chunk an external
    worker reported without timings is one segment (number 0) over the whole chunk."""
    found = json.loads(segments) if isinstance(segments, str) else (segments or [])
    rows = [(number, float(s["start"]), float(s["end"]), str(s["text"]).strip())
            for number, s in enumerate(found) if str(s["text"]).strip()]
    return rows or ([(0, start, end, text.strip())] if text.strip() else [])


INBOX_WAITING, INBOX_DONE, INBOX_FAILED = "queued", "done", "failed"
"""An inbox file's ``status``: taken and waiting for its transcription; delivered to the outbox; set aside
in ``failed/``."""


class InboxFile(BaseModel):
    """A file taken from a watched folder, and what became of it (so a restart neither loses nor repeats it)."""

    inbox = peewee.CharField(max_length=1024)
    name = peewee.CharField(max_length=512)
    sha256 = peewee.CharField(max_length=64)
    size = peewee.BigIntegerField()
    mtime = peewee.DoubleField()
    transcription = peewee.ForeignKeyField(Transcription, null=True, column_name="transcription_id",
                                           backref="inbox_files", on_delete="SET NULL")
    status = peewee.CharField(max_length=16, index=True)
    error = peewee.TextField(default="")
    outbox_stem = peewee.CharField(max_length=512, default="")
    """What its transcripts are called in the outbox (before the format's suffix); "" until delivered."""

    class Meta:
        table_name = "inbox_files"
        indexes = ((("inbox", "name"), False),)


class ApiKey(BaseModel):
    """A user's API key: only its lookup prefix and a keyed hash of the whole key are kept (:mod:`lazyd.api_keys`)."""

    user = peewee.ForeignKeyField(User, column_name="user_id", backref="api_keys", on_delete="CASCADE")
    name = peewee.CharField(max_length=100)
    prefix = peewee.CharField(max_length=16, unique=True)
    digest = peewee.CharField(max_length=64)
    last_used_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "api_keys"


class Node(AsyncModel):
    """A daemon on this database, as it last said: what it serves and which models it transcribes with.
    Each one rewrites its row every :data:`lazyd.nodes.NODE_BEAT_SECS`; older rows are daemons gone."""

    name = peewee.CharField(max_length=128, primary_key=True)
    api = peewee.BooleanField(default=True)
    transcribes = peewee.BooleanField(default=False)
    backend = peewee.CharField(max_length=64, default="")
    models = JSONField(default=list)
    version = peewee.CharField(max_length=32, default="")
    started_at = peewee.DateTimeField(default=utcnow)
    seen_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "nodes"


class SchemaVersion(AsyncModel):
    version = peewee.IntegerField(primary_key=True)
    description = peewee.CharField(max_length=256)
    applied_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "schema_version"


MODELS: tuple[type[peewee.Model], ...] = (User, Transcription, TranscriptionChunk, SegmentText, InboxFile, ApiKey,
                                          Node, SchemaVersion)
