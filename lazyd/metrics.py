"""What ``GET /metrics`` exposes, in Prometheus' text format (``prometheus-client``).

One :class:`Metrics` per running daemon, with its own registry (tests run several daemons in one process).
Counters and histograms are updated where things happen (a chunk saved, a worker started, a request
answered); the job counts by state, the queue's depth and its oldest job's age are read from the store when
``/metrics`` is scraped, so several daemons on one database report the same numbers.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import PurePath

import peewee
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .jobs.states import QUEUED, STATES, queue_counts
from .store import Store, Transcription

CHUNK_SECONDS_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
REQUEST_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LOAD_SECONDS_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


class Metrics:
    def __init__(self, node: str = "") -> None:
        self.registry = CollectorRegistry()
        add = {"registry": self.registry}
        Gauge("lazyd_node_info", "This daemon, by its node name (several may share a database)", ["node"],
              **add).labels(node=node).set(1)
        self.jobs = Gauge("lazyd_jobs", "Transcriptions in each state", ["state"], **add)
        self.queue_depth = Gauge("lazyd_queue_depth", "Transcriptions waiting to be claimed", **add)
        self.oldest_queued = Gauge("lazyd_queue_oldest_age_seconds",
                                   "How long the oldest waiting transcription has waited (0 when none)", **add)
        self.audio_seconds = Counter("lazyd_audio_transcribed_seconds", "Audio transcribed, in seconds",
                                     ["backend", "model"], **add)
        self.realtime_factor = Gauge("lazyd_realtime_factor",
                                     "Audio seconds per decoding second of the latest chunk", ["backend", "model"], **add)
        self.chunk_seconds = Histogram("lazyd_chunk_decode_seconds", "Time to decode one chunk",
                                       ["backend", "model"], buckets=CHUNK_SECONDS_BUCKETS, **add)
        self.worker_restarts = Counter("lazyd_worker_restarts", "Worker processes started again, by cause",
                                       ["cause"], **add)
        self.model_load_seconds = Histogram("lazyd_model_load_seconds", "Time for a worker to load its model",
                                            ["backend", "model"], buckets=LOAD_SECONDS_BUCKETS, **add)
        self.inbox_files = Counter("lazyd_inbox_files", "Files found in watched folders, by outcome",
                                   ["outcome"], **add)
        self.requests = Counter("lazyd_http_requests", "HTTP requests answered", ["method", "route", "status"],
                                **add)
        self.request_seconds = Histogram("lazyd_http_request_duration_seconds", "Time to answer an HTTP request",
                                         ["method", "route"], buckets=REQUEST_SECONDS_BUCKETS, **add)
        self.websockets = Gauge("lazyd_websocket_connections", "Open event WebSockets", **add)

    # -- where things happen

    def chunk_done(self, backend: str, model: str, audio_secs: float, decode_secs: float) -> None:
        labels = {"backend": backend, "model": model_label(model)}
        self.audio_seconds.labels(**labels).inc(audio_secs)
        self.chunk_seconds.labels(**labels).observe(decode_secs)
        if decode_secs > 0:
            self.realtime_factor.labels(**labels).set(audio_secs / decode_secs)

    def model_loaded(self, backend: str, model: str, secs: float) -> None:
        self.model_load_seconds.labels(backend=backend, model=model_label(model)).observe(secs)

    def request_answered(self, method: str, route: str, status: int, secs: float) -> None:
        self.requests.labels(method=method, route=route, status=str(status)).inc()
        self.request_seconds.labels(method=method, route=route).observe(secs)

    # -- read when scraped

    async def exposition(self, store: Store) -> bytes:
        """The text format, with the job counts read now."""
        counts = await queue_counts(store)
        for state in STATES:
            self.jobs.labels(state=state).set(counts.get(state, 0))
        self.queue_depth.set(counts.get(QUEUED, 0))
        self.oldest_queued.set(await _oldest_queued_age(store))
        return generate_latest(self.registry)


def model_label(model: str) -> str:
    """A model's name for a label: the configured name, or a path's last part (no file system paths)."""
    return PurePath(model).name if model else "default"


async def _oldest_queued_age(store: Store) -> float:
    rows = await store.list(Transcription.select(peewee.fn.MIN(Transcription.create_date).alias("oldest"))
                            .where(Transcription.current_state == QUEUED).dicts())
    oldest = rows[0]["oldest"] if rows else None
    if oldest is None:
        return 0.0
    if isinstance(oldest, str):  # SQLite's aggregate gives the stored text back
        oldest = datetime.fromisoformat(oldest)
    if oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=timezone.utc)
    return max(0.0, time.time() - oldest.timestamp())
