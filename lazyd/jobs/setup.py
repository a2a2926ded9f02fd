"""From configuration and installed plugins to what the scheduler runs: backend, model, retry policy."""

from __future__ import annotations

from datetime import timedelta

from ..backend import ModelSpec
from ..config import Config
from ..registry import BackendChoice, Registry
from .states import RetryPolicy
from .worker import WorkerSetup


def model_spec(config: Config, choice: BackendChoice) -> ModelSpec:
    settings = config.transcription
    return ModelSpec(model=settings.model, models_dir=settings.models_dir or str(config.data_path / "models"),
                     device=choice.device, compute_type=settings.compute_type, cpu_threads=settings.cpu_threads)


def worker_setup(config: Config, registry: Registry) -> tuple[WorkerSetup, BackendChoice]:
    """The backend chosen for this host (raises :class:`lazyd.registry.PluginError` when there is none)."""
    choice = registry.choose_backend(config.transcription.backend, config.transcription.device)
    setup = WorkerSetup(choice.backend.name, model_spec(config, choice), config.plugins.modules)
    return setup, choice


def retry_policy(config: Config) -> RetryPolicy:
    return RetryPolicy(config.scheduler.max_attempts, timedelta(seconds=config.scheduler.retry_backoff_secs))
