"""The JSON shapes the API sends (the seed's, where the seed had them), beside the routes that send them.

The transcription object itself is :func:`lazyd.jobs.transcripts.transcription_json`: the plugin hook
receives it too, so it is defined below this layer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..api_keys import KEY_START
from ..daemon import DaemonStatus
from ..store import ApiKey, TranscriptionChunk, User


def key_json(key: ApiKey) -> dict[str, Any]:
    """An API key as its owner sees it listed: never the key, only the prefix that names it."""
    return {
        "id": key.id,
        "name": key.name,
        "prefix": f"{KEY_START}{key.prefix}",
        "create_date": key.create_date.isoformat(),
        "last_used": key.last_used_at.isoformat() if key.last_used_at else None,
    }


def user_json(user: User) -> dict[str, Any]:
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


def chunk_json(chunk: TranscriptionChunk, chunk_size_secs: float) -> dict[str, Any]:
    """The seed's chunk object: ``chunk_size_secs`` is the transcription's nominal size, as an integer."""
    return {"id": chunk.id, "chunk_order": chunk.chunk_no, "chunk_size_secs": int(chunk_size_secs),
            "transcription": chunk.text}


def page_json(page: int, size: int, total: int, key: str, items: list[Any]) -> dict[str, Any]:
    """The seed's page object: ``page``, ``size``, ``total``, ``pages = ceil(total / size)`` and the items."""
    return {"page": page, "size": size, "total": total, "pages": -(-total // size), key: items}


def health_json(status: DaemonStatus) -> dict[str, Any]:
    """``GET /health``: the database, the host, the backend chosen and why, the workers, the queue, the inboxes."""
    return {
        "api": True,
        "database": {"ok": status.database_ok, "url": status.database_url},
        "host": {**dataclasses.asdict(status.host), "description": status.host.describe()},
        "backend": _backend_json(status),
        "queue": status.queue,
        "inboxes": [{"path": inbox.path, "user": inbox.user, "outbox": inbox.outbox, "watching": inbox.watching,
                     "problem": inbox.problem} for inbox in status.inboxes],
    }


def _backend_json(status: DaemonStatus) -> dict[str, Any]:
    """Only what applies: the choice once made, the workers while transcribing, a problem when there is one."""
    backend = status.backend
    shown: dict[str, Any] = {"scheduler": backend.scheduler}
    if backend.backend:
        shown.update(backend=backend.backend, device=backend.device, reason=backend.reason,
                     node=status.node, workers=[dataclasses.asdict(worker) for worker in status.workers])
    if backend.backend or backend.problem:
        shown["problem"] = backend.problem
    return shown
