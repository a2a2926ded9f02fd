"""From configuration and installed plugins to what the scheduler runs: backend, model, retry policy."""

from __future__ import annotations

import os
from datetime import timedelta

from ..backend import ModelSpec
from ..config import Config
from ..registry import BackendChoice, Registry
from .states import RetryPolicy
from .worker import WorkerSetup


MAX_AUTO_PARALLEL = 8
"""``parallel = 0`` decodes at most this many chunks at once: beyond it, each decode's own memory (its
chunk's audio and features, tens of MB for a few minutes) outweighs what one more core brings."""


def model_spec(config: Config, choice: BackendChoice) -> ModelSpec:
    settings = config.transcription
    return ModelSpec(model=settings.model or "", models_dir=str(config.models_path),
                     device=choice.device, compute_type=settings.compute_type, cpu_threads=settings.cpu_threads,
                     parallel=parallel_decodes(config, choice.device))


def parallel_decodes(config: Config, device: str) -> int:
    """How many chunks of a job each worker decodes at once: ``[transcription] parallel``, or when that is 0,
    on the CPU one per core (shared among the scheduler's workers) and on a GPU one.

    Measured on 2 cores (issue 10, bench/transcribe.py): tiny.en decodes no faster with 2 threads than with
    1, but two chunks decoded at once, one thread each, finish in half the time. The workers run at a lower
    priority (``worker_idle_priority``, ``worker_niceness``), so every core can be theirs without slowing the
    API down.
    """
    if config.transcription.parallel > 0:
        return config.transcription.parallel
    if device not in ("cpu", "auto"):
        return 1
    return max(1, min(MAX_AUTO_PARALLEL, (os.cpu_count() or 1) // max(1, config.scheduler.workers)))


def backend_choice(config: Config, registry: Registry) -> BackendChoice:
    transcription = config.transcription
    return registry.choose_backend(transcription.backend, transcription.device, transcription.cpu_backend)


def worker_setup(config: Config, registry: Registry) -> tuple[WorkerSetup, BackendChoice]:
    """The backend chosen for this host (raises :class:`lazyd.registry.PluginError` when there is none)."""
    choice = backend_choice(config, registry)
    scheduler = config.scheduler
    setup = WorkerSetup(choice.backend.name, model_spec(config, choice), config.plugins.modules,
                        scheduler.worker_niceness, scheduler.worker_idle_priority)
    return setup, choice


def retry_policy(config: Config) -> RetryPolicy:
    return RetryPolicy(config.scheduler.max_attempts, timedelta(seconds=config.scheduler.retry_backoff_secs))
