"""Configuration: `config.toml` read with tomllib into frozen dataclasses.

Precedence, highest first: command-line options, environment variables, the config file, the defaults
below. An environment variable names one key as ``LAZYD_`` + the key's path joined by ``__``, upper-case:
``data_dir`` is ``LAZYD_DATA_DIR``, ``[auth] admin_token`` is ``LAZYD_AUTH__ADMIN_TOKEN``. A secret key
``x`` can also be read from a file given as ``x_file`` (``LAZYD_AUTH__ADMIN_TOKEN_FILE``). Unknown keys
and variables, and values of the wrong type, are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .options import JobOptions, JobOverrides, from_text

ENV_PREFIX = "LAZYD_"
CONFIG_ENV = "LAZYD_CONFIG"
MASK = "********"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and says why."""


def secret(default: str = "") -> Any:
    """A field that may also come from ``<name>_file`` and is masked when printed."""
    return field(default=default, metadata={"secret": True})


@dataclass(frozen=True)
class ServerConfig:
    listen: bool = True
    """``false``: a worker-only node, which transcribes and watches its inboxes but answers no HTTP."""
    host: str = "127.0.0.1"
    port: int = 8000
    max_json_body_kb: int = 1024
    trusted_origins: tuple[str, ...] = ()
    body_idle_timeout_secs: float = 60.0


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = ""
    pool_size: int = 10
    connect_timeout_s: float = 10.0


@dataclass(frozen=True)
class AuthConfig:
    jwt_secret: str = secret()
    api_key_secret: str = secret()
    access_token_minutes: int = 30
    refresh_token_days: int = 30
    bcrypt_rounds: int = 12
    open_registration: bool = True
    admin_token: str = secret()
    worker_token: str = secret()
    metrics_token: str = secret()
    """The bearer ``GET /metrics`` takes from other machines (from this one it is open); unset: refused."""


@dataclass(frozen=True)
class TranscriptionConfig(JobOptions):
    """The engine's settings, and the defaults of every job option (:class:`lazyd.options.JobOptions`)."""

    backend: str = "auto"
    cpu_backend: str = "faster-whisper"
    models_dir: str = ""
    model_hub: str = "https://huggingface.co"
    device: str = "auto"
    compute_type: str = "auto"
    cpu_threads: int = 0
    parallel: int = 0
    chunk_secs: float = 240.0
    cut_window_secs: float = 30.0
    cut_overlap_secs: float = 2.0


@dataclass(frozen=True)
class LimitsConfig:
    min_audio_secs: float = 10.0
    max_audio_secs: float = 7200.0
    max_upload_mb: int = 1024
    active_jobs_per_user: int = 1
    max_transcriptions_per_user: int = 100


@dataclass(frozen=True)
class SchedulerConfig:
    enabled: bool = True
    workers: int = 1
    node_name: str = ""
    lease_secs: float = 30.0
    max_attempts: int = 3
    retry_backoff_secs: float = 10.0
    stall_timeout_secs: float = 600.0
    cancel_grace_secs: float = 3.0
    shutdown_grace_secs: float = 30.0
    poll_secs: float = 2.0
    worker_niceness: int = 10
    worker_idle_priority: bool = True
    """Workers decode only on CPU time nothing else wants (Linux SCHED_IDLE): a request never waits behind a
    decode. ``worker_niceness`` alone is not enough: a nice-10 decode still delays each wake-up of the
    daemon's threads by a few milliseconds, and a request wakes them many times (issue 10 measured
    ``GET /transcriptions`` p99 at 166 ms with it, 12.5 ms with SCHED_IDLE, while transcribing)."""
    unload_idle_secs: float = 300.0

    def node(self) -> str:
        """This daemon's name among those sharing a database: ``node_name``, else the host name."""
        return self.node_name or socket.gethostname()


@dataclass(frozen=True)
class PluginsConfig:
    modules: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class InboxConfig(JobOverrides):
    """One watched folder: ``[[inbox]]`` in config.toml; any job option set here replaces the configured one
    for this folder's recordings."""

    path: str
    user: str
    outbox: str
    formats: tuple[str, ...] = ("txt",)
    after: str = "move"
    watch: str = "auto"
    settle_secs: float = 3.0
    scan_secs: float = 2.0
    quota_applies: bool = False

    @property
    def folder(self) -> Path:
        """The folder's absolute path, as the inbox's records name it."""
        return Path(self.path).resolve()


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    format: str = "text"


@dataclass(frozen=True)
class Config:
    data_dir: str = ""
    audio_dir: str = ""
    """Where uploaded recordings are kept; "" = ``audio`` in the data directory. Daemons sharing a database
    need one every one of them sees (a shared mount)."""
    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    auth: AuthConfig = AuthConfig()
    transcription: TranscriptionConfig = TranscriptionConfig()
    limits: LimitsConfig = LimitsConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    plugins: PluginsConfig = PluginsConfig()
    logging: LoggingConfig = LoggingConfig()
    inbox: tuple[InboxConfig, ...] = ()

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def audio_path(self) -> Path:
        return Path(self.audio_dir) if self.audio_dir else self.data_path / "audio"

    @property
    def models_path(self) -> Path:
        """Where models live: ``[transcription] models_dir``, or ``models`` in the data directory."""
        return Path(self.transcription.models_dir) if self.transcription.models_dir else self.data_path / "models"

    @property
    def database_url(self) -> str:
        """The configured URL, or the SQLite file in the data directory."""
        return self.database.url or f"sqlite:///{self.data_path / 'lazyd.sqlite3'}"


def default_data_dir(env: Mapping[str, str]) -> Path:
    """systemd's StateDirectory when run as a unit, else the XDG per-user data directory."""
    if state := env.get("STATE_DIRECTORY"):
        return Path(state.split(":")[0])
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "lazyd"


def default_config_file(env: Mapping[str, str]) -> Path | None:
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    for candidate in (Path(base) / "lazyd" / "config.toml", Path("/etc/lazyd/config.toml")):
        if candidate.is_file():
            return candidate
    return None


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Read the file (explicit, ``$LAZYD_CONFIG`` or the default location), apply the environment."""
    env = os.environ if env is None else env
    file = _config_file(path, env)
    table = _read_toml(file) if file else {}
    _reject_unknown_env(env)
    config = _build(Config, table, env, ())
    chosen_dir = data_dir or config.data_dir or default_data_dir(env)
    return dataclasses.replace(config, data_dir=str(Path(chosen_dir).expanduser().resolve()))


def _config_file(path: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path | None:
    explicit = path or env.get(CONFIG_ENV)
    if not explicit:
        return default_config_file(env)
    file = Path(explicit).expanduser()
    if not file.is_file():
        raise ConfigError(f"config file {file} does not exist")
    return file


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as stream:
            return tomllib.load(stream)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{file} is not valid TOML: {error}") from None


def env_name(key_path: tuple[str, ...]) -> str:
    return ENV_PREFIX + "__".join(key_path).upper()


def _all_env_names(cls: type, prefix: tuple[str, ...] = ()) -> set[str]:
    names: set[str] = set()
    for spec in dataclasses.fields(cls):
        path = (*prefix, spec.name)
        kind = _field_types(cls)[spec.name]
        if dataclasses.is_dataclass(kind):
            names |= _all_env_names(kind, path)
            continue
        if _table_array_item(kind):
            continue  # arrays of tables ([[inbox]]) are set in the file only
        names.add(env_name(path))
        if spec.metadata.get("secret"):
            names.add(env_name(path) + "_FILE")
    return names


def _reject_unknown_env(env: Mapping[str, str]) -> None:
    known = _all_env_names(Config) | {CONFIG_ENV}
    unknown = sorted(name for name in env if name.startswith(ENV_PREFIX) and name not in known)
    if unknown:
        raise ConfigError(f"unknown environment variable {unknown[0]} (no such configuration key)")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, table: Any, env: Mapping[str, str], prefix: tuple[str, ...]) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"'{'.'.join(prefix)}' must be a table")
    types_by_name = _field_types(cls)
    known = {spec.name for spec in dataclasses.fields(cls)}
    known |= {f"{spec.name}_file" for spec in dataclasses.fields(cls) if spec.metadata.get("secret")}
    for key in table:
        if key not in known:
            raise ConfigError(f"unknown configuration key '{'.'.join((*prefix, key))}'")
    values = {}
    for spec in dataclasses.fields(cls):
        path = (*prefix, spec.name)
        kind = types_by_name[spec.name]
        if dataclasses.is_dataclass(kind):
            values[spec.name] = _build(kind, table.get(spec.name, {}), env, path)
        elif item := _table_array_item(kind):
            values[spec.name] = _build_array(item, table.get(spec.name, []), path)
        else:
            found = _lookup(spec, table, env, path)
            if found is not _MISSING:
                values[spec.name] = _coerce(found, kind, path)
            elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise ConfigError(f"'{'.'.join(path)}' is required")
    return cls(**values)


def _table_array_item(kind: Any) -> type | None:
    """The entry type of an array of tables (``tuple[InboxConfig, ...]``), else ``None``."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple and args and dataclasses.is_dataclass(args[0]):
        return args[0]
    return None


def _build_array(item: type, entries: Any, path: tuple[str, ...]) -> tuple[Any, ...]:
    if not isinstance(entries, list):
        raise ConfigError(f"'{'.'.join(path)}' must be an array of tables ([[{'.'.join(path)}]])")
    return tuple(_build(item, entry, {}, (*path, str(number))) for number, entry in enumerate(entries))


_MISSING = object()


def _lookup(spec: dataclasses.Field, table: dict[str, Any], env: Mapping[str, str], path: tuple[str, ...]) -> Any:
    name = env_name(path)
    if name in env:
        return _EnvText(env[name])
    if spec.metadata.get("secret") and name + "_FILE" in env:
        return _read_secret_file(env[name + "_FILE"], path)
    if spec.name in table:
        return table[spec.name]
    if spec.metadata.get("secret") and f"{spec.name}_file" in table:
        return _read_secret_file(table[f"{spec.name}_file"], path)
    return _MISSING


class _EnvText(str):
    """A value from the environment: text to be converted to the field's type."""


def _read_secret_file(file: Any, path: tuple[str, ...]) -> str:
    if not isinstance(file, str):
        raise ConfigError(f"'{'.'.join(path)}_file' must be a string path")
    try:
        return Path(file).expanduser().read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(f"cannot read '{'.'.join(path)}_file' {file}: {error.strerror}") from None


def _coerce(value: Any, kind: Any, path: tuple[str, ...]) -> Any:
    key = ".".join(path)
    kind = _unset_allowed(kind)
    if isinstance(value, _EnvText):
        value = _from_env_text(str(value), kind, key)
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    if typing.get_origin(kind) is tuple and isinstance(value, (list, tuple)):
        item_kind = typing.get_args(kind)[0]
        return tuple(_coerce(item, item_kind, path) for item in value)
    raise ConfigError(f"'{key}' must be {_describe(kind)}, got {type(value).__name__} {value!r}")


def _unset_allowed(kind: Any) -> Any:
    """``str`` for a job option's ``str | None``: a file or the environment can only set a value."""
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) and type(None) in args:
        return next(arg for arg in args if arg is not type(None))
    return kind


def _from_env_text(text: str, kind: Any, key: str) -> Any:
    try:
        if typing.get_origin(kind) is tuple:
            return json.loads(text) if text.startswith("[") else [part.strip() for part in text.split(",") if part.strip()]
        return from_text(text, kind)
    except ValueError:
        raise ConfigError(f"'{key}' must be {_describe(kind)}, got {text!r} from {ENV_PREFIX}...") from None


def _describe(kind: Any) -> str:
    if typing.get_origin(kind) is tuple:
        return f"a list of {_describe(typing.get_args(kind)[0])}s"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(kind, str(kind))


def effective_config(config: Config) -> dict[str, Any]:
    """The configuration as a nested dict with every secret that is set replaced by a mask."""
    shown = _masked(config)
    shown["database"]["url"] = mask_url_password(config.database.url)
    return shown


def _masked(instance: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in dataclasses.fields(instance):
        value = getattr(instance, spec.name)
        if dataclasses.is_dataclass(value):
            out[spec.name] = _masked(value)
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            out[spec.name] = [_masked(entry) for entry in value]
        elif spec.metadata.get("secret"):
            out[spec.name] = MASK if value else ""
        else:
            out[spec.name] = list(value) if isinstance(value, tuple) else value
    return out


def mask_url_password(url: str) -> str:
    """``postgresql://user:pw@host/db`` -> ``postgresql://user:********@host/db``, for logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not (sep and at and ":" in credentials):
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:{MASK}@{host}"


__all__ = [
    "AuthConfig",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "InboxConfig",
    "LimitsConfig",
    "LoggingConfig",
    "PluginsConfig",
    "SchedulerConfig",
    "TranscriptionConfig",
    "ServerConfig",
    "effective_config",
    "load_config",
    "mask_url_password",
]
