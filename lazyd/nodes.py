"""The daemons sharing one database, as each says every :data:`NODE_BEAT_SECS`: whether it serves the API,
whether it transcribes, with which backend and which models. ``GET /health`` shows an admin which daemons
can take what; a job naming a model that no live daemon has waits, and the daemons say so in their logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from . import __version__
from .jobs.states import QUEUED
from .store import Node, Store, Transcription, utcnow

NODE_BEAT_SECS = 10.0
NODE_GONE_SECS = 3 * NODE_BEAT_SECS
"""A daemon silent this long is taken to be gone (a crash leaves its row behind)."""


@dataclass(frozen=True)
class NodeStatus:
    name: str
    api: bool
    transcribes: bool
    backend: str
    models: list[str]
    version: str
    started_at: str
    seen_at: str
    alive: bool


@dataclass(frozen=True)
class ThisNode:
    """What this daemon announces."""

    name: str
    api: bool
    transcribes: bool
    backend: str
    models: frozenset[str]


async def announce(store: Store, node: ThisNode, started_at: object) -> None:
    """Write this daemon's row (created at its first beat, refreshed at each)."""
    row = {"name": node.name, "api": node.api, "transcribes": node.transcribes, "backend": node.backend,
           "models": sorted(node.models), "version": __version__, "started_at": started_at, "seen_at": utcnow()}
    await store.execute(Node.insert(**row).on_conflict(
        conflict_target=[Node.name], preserve=[Node.api, Node.transcribes, Node.backend, Node.models, Node.version,
                                               Node.started_at, Node.seen_at]))


async def known_nodes(store: Store) -> list[NodeStatus]:
    """Every daemon that ever announced itself, the live ones first."""
    gone_before = utcnow() - timedelta(seconds=NODE_GONE_SECS)
    rows = await store.list(Node.select().order_by(Node.name))
    nodes = [NodeStatus(row.name, row.api, row.transcribes, row.backend, list(row.models), row.version,
                        row.started_at.isoformat(), row.seen_at.isoformat(), row.seen_at >= gone_before)
             for row in rows]
    return sorted(nodes, key=lambda node: not node.alive)


async def unclaimable_models(store: Store, nodes: list[NodeStatus]) -> list[str]:
    """The models queued jobs name that no live transcribing daemon has: those jobs wait."""
    offered = {model for node in nodes if node.alive and node.transcribes for model in node.models}
    query = (Transcription.select(Transcription.requested_model).distinct()
             .where(Transcription.current_state == QUEUED, Transcription.requested_model != "").tuples())
    return sorted(model for (model,) in await store.list(query) if model not in offered)
