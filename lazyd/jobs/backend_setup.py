"""From configuration and installed plugins to what the scheduler runs: backend, model, retry policy."""

from __future__ import annotations

import os
from datetime import timedelta

from ..backend import ModelSpec
from ..config import Config
from ..registry import BackendChoice, Registry
from .states import RetryPolicy
from .worker import WorkerSetup


def model_spec(config: Config, choice: BackendChoice) -> ModelSpec:
    settings = config.transcription
    return ModelSpec(model=settings.model or "", models_dir=settings.models_dir or str(config.data_path / "models"),
                     device=choice.device, compute_type=settings.compute_type,
                     cpu_threads=settings.cpu_threads or default_cpu_threads())


def default_cpu_threads() -> int:
    """One core fewer than the machine has, at least one: the daemon keeps a core to answer the API.

    Measured on 2 cores (bench/transcribe.py): tiny.en decoded 30% faster with 1 thread than with 2, and
    API latency under load stayed within its target only when the worker left a core free.
    """
    return max(1, (os.cpu_count() or 1) - 1)


def worker_setup(config: Config, registry: Registry) -> tuple[WorkerSetup, BackendChoice]:
    """The backend chosen for this host (raises :class:`lazyd.registry.PluginError` when there is none)."""
    choice = registry.choose_backend(config.transcription.backend, config.transcription.device)
    setup = WorkerSetup(choice.backend.name, model_spec(config, choice), config.plugins.modules)
    return setup, choice


def retry_policy(config: Config) -> RetryPolicy:
    return RetryPolicy(config.scheduler.max_attempts, timedelta(seconds=config.scheduler.retry_backoff_secs))
