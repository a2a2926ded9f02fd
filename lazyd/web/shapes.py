"""The JSON shapes the API sends (the seed's, where the seed had them), beside the routes that send them.

The transcription object itself is :func:`lazyd.jobs.transcripts.transcription_json`: the plugin hook
receives it too, so it is defined below this layer.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, NotRequired, TypedDict

from ..api_keys import KEY_START
from ..daemon import DaemonStatus, InboxStatus, WorkerStatus
from ..nodes import NodeStatus
from ..jobs.transcripts import TranscriptionJson
from ..store import ApiKey, TranscriptionChunk, User

# -- the shapes, as ``GET /openapi.json`` describes them --------------------------------------------------


class UserJson(TypedDict):
    id: int
    username: str
    active: bool
    can_interact: bool
    role: Literal["user", "admin"]
    create_date: str
    update_date: str


class KeyJson(TypedDict):
    id: int
    name: str
    prefix: str
    """The start of the key, enough to tell one from another."""
    create_date: str
    last_used: str | None


class NewKeyJson(KeyJson):
    key: str
    """The whole key: shown in this answer only."""


class KeyList(TypedDict):
    keys: list[KeyJson]


class ChunkJson(TypedDict):
    id: int
    chunk_order: int
    chunk_size_secs: int
    transcription: str


class WordJson(TypedDict):
    start: float
    end: float
    word: str
    probability: float


class SegmentJson(TypedDict):
    chunk_order: int
    segment_no: int
    """Its number in the chunk: ``PATCH /transcript/segments/{chunk_order}/{segment_no}`` corrects it."""
    start: float
    end: float
    text: str
    words: NotRequired[list[WordJson]]
    avg_logprob: NotRequired[float | None]
    no_speech_prob: NotRequired[float | None]
    confidence: float | None
    """How sure the decoder was, from 0 to 1 (``null`` when the backend gave no figures)."""
    label: str
    edited: bool
    """Whether ``text`` is a person's correction (the machine's is kept and can be restored)."""


class SegmentEditJson(TypedDict):
    chunk_order: int
    segment_no: int
    start: float
    end: float
    text: str
    machine_text: str
    label: str
    edited: bool


class TranscriptionPage(TypedDict):
    page: int
    size: int
    total: int
    pages: int
    transcriptions: list[TranscriptionJson]


class ChunkPage(TypedDict):
    page: int
    size: int
    total: int
    pages: int
    transcriptions: list[ChunkJson]


class SegmentPage(TypedDict):
    page: int
    size: int
    total: int
    pages: int
    segments: list[SegmentJson]


class UserPage(TypedDict):
    page: int
    size: int
    total: int
    pages: int
    users: list[UserJson]


class SearchHitJson(TypedDict):
    transcription_id: int
    title: str
    """The recording's name."""
    chunk_order: int
    start: float
    end: float
    text: str
    snippet: str
    """Part of the text around the matched words, each marked with U+0002 before and U+0003 after."""


class SearchPage(TypedDict):
    page: int
    size: int
    total: int
    pages: int
    hits: list[SearchHitJson]


class RegistrationJson(TypedDict):
    open: bool
    """Whether anyone may create an account (``[auth] open_registration``)."""


class TokenPair(TypedDict):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"]


class Uploaded(TypedDict):
    message: str
    task_id: int
    file: str


class Alive(TypedDict):
    api: bool
    database: bool


class DatabaseHealth(TypedDict):
    ok: bool
    url: str


class HostJson(TypedDict):
    system: str
    machine: str
    cores: int
    cpu_features: list[str]
    description: str


class BackendJson(TypedDict):
    scheduler: bool
    backend: NotRequired[str]
    device: NotRequired[str]
    reason: NotRequired[str]
    node: NotRequired[str]
    workers: NotRequired[list[WorkerStatus]]
    problem: NotRequired[str]


class PublicBackendJson(TypedDict):
    scheduler: bool
    backend: NotRequired[str]
    device: NotRequired[str]
    reason: NotRequired[str]
    workers_alive: NotRequired[int]
    working: bool
    """False when the backend or its workers report a problem (an admin's ``/health`` says which)."""


class PublicHealthJson(TypedDict):
    """``/health`` for anyone: whether it works, never where things are."""

    api: bool
    database: bool
    backend: PublicBackendJson
    queue: dict[str, int]


class HealthJson(TypedDict):
    """``/health`` for an admin."""

    api: bool
    database: DatabaseHealth
    host: HostJson
    backend: BackendJson
    queue: dict[str, int]
    inboxes: list[InboxStatus]
    nodes: list[NodeStatus]
    """Every daemon on this database (this one too): whether it is alive, serves the API, transcribes, and
    with which backend and models."""
    unclaimable_models: list[str]
    """Models that queued jobs name and no live daemon has: those jobs wait for one that has it."""


class FormatJson(TypedDict):
    name: str
    media_type: str
    suffix: str
    description: str
    plugin: str


class FormatList(TypedDict):
    formats: list[FormatJson]


class WorkerReportAnswer(TypedDict):
    transcription: TranscriptionJson


# -- shaping ------------------------------------------------------------------------------------------------

def key_json(key: ApiKey) -> KeyJson:
    """An API key as its owner sees it listed: never the key, only the prefix that names it."""
    return {
        "id": key.id,
        "name": key.name,
        "prefix": f"{KEY_START}{key.prefix}",
        "create_date": key.create_date.isoformat(),
        "last_used": key.last_used_at.isoformat() if key.last_used_at else None,
    }


def user_json(user: User) -> UserJson:
    """The seed's user object."""
    return {
        "id": user.id,
        "username": user.username,
        "active": user.active,
        "can_interact": user.can_interact,
        "role": user.role,
        "create_date": user.create_date.isoformat(),
        "update_date": user.update_date.isoformat(),
    }


def chunk_json(chunk: TranscriptionChunk, chunk_size_secs: float) -> ChunkJson:
    """The seed's chunk object: ``chunk_size_secs`` is the transcription's nominal size, as an integer."""
    return {"id": chunk.id, "chunk_order": chunk.chunk_no, "chunk_size_secs": int(chunk_size_secs),
            "transcription": chunk.text}


def page_json(page: int, size: int, total: int, key: str, items: list[Any]) -> dict[str, Any]:
    """The seed's page object: ``page``, ``size``, ``total``, ``pages = ceil(total / size)`` and the items."""
    return {"page": page, "size": size, "total": total, "pages": -(-total // size), key: items}


def health_json(status: DaemonStatus) -> HealthJson:
    """``GET /health``: the database, the host, the backend chosen and why, the workers, the queue, the inboxes."""
    return {
        "api": True,
        "database": {"ok": status.database_ok, "url": status.database_url},
        "host": {**dataclasses.asdict(status.host), "description": status.host.describe()},
        "backend": _backend_json(status),
        "queue": status.queue,
        "inboxes": [{"path": inbox.path, "user": inbox.user, "outbox": inbox.outbox, "watching": inbox.watching,
                     "problem": inbox.problem} for inbox in status.inboxes],
        "nodes": [dataclasses.asdict(node) for node in status.nodes],
        "unclaimable_models": list(status.unclaimable_models),
    }


def public_health_json(status: DaemonStatus) -> PublicHealthJson:
    """``GET /health`` without an admin's credentials: no path, process id, host detail or URL."""
    backend = status.backend
    shown: PublicBackendJson = {"scheduler": backend.scheduler, "working": not backend.problem}
    if backend.backend:
        shown.update(backend=backend.backend, device=backend.device, reason=backend.reason,
                     workers_alive=sum(worker.alive for worker in status.workers))
    return {"api": True, "database": status.database_ok, "backend": shown, "queue": status.queue}


def _backend_json(status: DaemonStatus) -> BackendJson:
    """Only what applies: the choice once made, the workers while transcribing, a problem when there is one."""
    backend = status.backend
    shown: BackendJson = {"scheduler": backend.scheduler}
    if backend.backend:
        shown.update(backend=backend.backend, device=backend.device, reason=backend.reason,
                     node=status.node, workers=[dataclasses.asdict(worker) for worker in status.workers])
    if backend.backend or backend.problem:
        shown["problem"] = backend.problem
    return shown
