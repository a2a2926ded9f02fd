"""The ``lazyd`` command: ``serve``, ``check-config`` and ``user add|list|set``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import json
import logging
import os
import signal
import sys
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from aiohttp import web

from . import __version__, users
from .aio import stop_task
from .api_keys import ApiKeys, NewKey, key_secret, name_problem
from .audio import AudioError
from .auth import PasswordHasher
from .backup import BackupError, backup, point_audio_here, restore_files
from .config import Config, ConfigError, effective_config, load_config
from .daemon import Daemon
from .host import probe_host
from .inbox import InboxError
from .exporters import ExportOptions, Exporter, Transcript
from .files import make_private_dir
from .jobs.backend_setup import backend_choice
from .jobs.states import IN_PROGRESS, QUEUED, queue_counts
from .jobs.transcripts import load_transcript
from .local import ProgressBar, transcribe_file
from .logs import configure_logging
from .models.catalog import BUNDLED_NAME, bundled_model
from .options import OptionSpec, from_text, option_specs, overrides_from
from .registry import PluginError, load_registry, plugin_origins
from .store import DATABASE_ERRORS, SchemaTooNew, Store, StoreError, Transcription
from .systemd import Notifier
from .validation import password_problem, username_problem
from .web import create_app
from .web.access_log import AccessLogger
from .web.server import ApiRunner
from .web.keys import DAEMON
from .web.shapes import key_json

log = logging.getLogger("lazyd")


class CliError(Exception):
    """A user-facing failure: printed as ``lazyd: error: ...`` with exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="configuration file (default: $LAZYD_CONFIG, ~/.config/lazyd/config.toml, "
                             "/etc/lazyd/config.toml)")
    common.add_argument("--data-dir", metavar="DIR", default=argparse.SUPPRESS,
                        help="database, audio and secrets (default: $LAZYD_DATA_DIR or ~/.local/share/lazyd)")
    parser = argparse.ArgumentParser(prog="lazyd", description="Self-hosted transcription daemon.",
                                     parents=[common])
    parser.add_argument("--version", action="version", version=f"lazyd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[common], help="run the daemon")
    serve.add_argument("--host", help="address to bind (default from config: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default from config: 8000)")
    serve.set_defaults(run=cmd_serve)

    check = commands.add_parser("check-config", parents=[common],
                                help="validate and print the effective configuration, secrets masked")
    check.set_defaults(run=cmd_check_config)

    plugins = commands.add_parser("plugins", parents=[common],
                                  help="list plugins, their backends and which backend this host would use")
    plugins.set_defaults(run=cmd_plugins)

    transcribe = commands.add_parser("transcribe", parents=[common],
                                     help="transcribe a file here, without a server, and print the text")
    transcribe.add_argument("file", type=Path)
    _add_job_option_flags(transcribe)
    _add_output_options(transcribe)
    transcribe.set_defaults(run=cmd_transcribe)

    export = commands.add_parser("export", parents=[common], help="write a stored transcription in a format")
    export.add_argument("id", type=int, help="the transcription's id")
    _add_output_options(export)
    export.set_defaults(run=cmd_export)

    status = commands.add_parser("status", parents=[common],
                                 help="the store, the queue and the running daemon, with the details /health "
                                      "shows only to admins")
    status.set_defaults(run=cmd_status)

    backup = commands.add_parser("backup", parents=[common],
                                 help="copy the store, the audio and the secrets into a new folder (the daemon may run)")
    backup.add_argument("destination", type=Path)
    backup.set_defaults(run=cmd_backup)
    restore = commands.add_parser("restore", parents=[common],
                                  help="put a backup into an empty data directory (the daemon must not run)")
    restore.add_argument("source", type=Path)
    restore.set_defaults(run=cmd_restore)

    _add_user_commands(commands, common)
    _add_key_commands(commands, common)
    _add_model_commands(commands, common)
    return parser


def _add_job_option_flags(parser: argparse.ArgumentParser) -> None:
    """A flag per job option (:mod:`lazyd.options`); one not given keeps the configured default."""
    group = parser.add_argument_group("job options (default: the [transcription] configuration)")
    for spec in option_specs():
        if spec.kind is bool:
            group.add_argument(*spec.flags, dest=spec.name, action=argparse.BooleanOptionalAction, help=spec.help)
        else:
            group.add_argument(*spec.flags, dest=spec.name, type=_option_value(spec), help=spec.help,
                               metavar=spec.name.upper())


def _option_value(spec: OptionSpec) -> Callable[[str], object]:
    """argparse's converter for one option: its type, then its check."""

    def convert(text: str) -> object:
        value = from_text(text, spec.kind)
        if problem := spec.problem(value):
            raise argparse.ArgumentTypeError(problem)
        return value

    convert.__name__ = spec.kind.__name__  # argparse names the type in its error message
    return convert


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", default="txt", help="an exporter's name (see lazyd plugins); default txt")
    parser.add_argument("-o", "--output", type=Path, help="write to this file instead of standard output")
    parser.add_argument("--timestamps", action="store_true", help="txt: start each segment with its time")
    defaults = ExportOptions()
    parser.add_argument("--max-cue-chars", type=int, default=defaults.max_cue_chars, metavar="N",
                        help=f"srt/vtt: the longest cue in characters (default {defaults.max_cue_chars})")
    parser.add_argument("--max-cue-secs", type=float, default=defaults.max_cue_secs, metavar="S",
                        help=f"srt/vtt: the longest cue in seconds (default {defaults.max_cue_secs:g})")


def _add_model_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    models = commands.add_parser("models", parents=[common], help="manage models")
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    convert = actions.add_parser("convert", parents=[common], help="write a CTranslate2 Whisper model "
                                 "(faster-whisper's) as a whisper.cpp ggml file")
    convert.add_argument("source", help=f"the model's directory, or {BUNDLED_NAME} for the bundled one")
    convert.add_argument("destination", nargs="?",
                         help="the ggml file to write (default: ggml-<model>.bin in the models directory)")
    convert.set_defaults(run=cmd_models_convert)
    listing = actions.add_parser("list", parents=[common], help="the models installed, for every backend")
    listing.set_defaults(run=cmd_models_list)
    pull = actions.add_parser("pull", parents=[common], help="download a model into the models directory")
    pull.add_argument("name", help="a Whisper model name: tiny.en, base, small.en, large-v3, ...")
    pull.add_argument("--format", choices=("ggml", "ctranslate2"), default="ggml",
                      help="ggml for whisper.cpp (the default), ctranslate2 for faster-whisper")
    pull.add_argument("--hub", help="where to download from (default: [transcription] model_hub)")
    pull.set_defaults(run=cmd_models_pull)


def _add_user_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    user = commands.add_parser("user", parents=[common], help="manage accounts")
    actions = user.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser("add", parents=[common], help="create an account")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="give the admin role")
    add.add_argument("--can-interact", action="store_true", help="allow uploads")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.set_defaults(run=cmd_user_add)

    listing = actions.add_parser("list", parents=[common], help="list accounts")
    listing.set_defaults(run=cmd_user_list)

    change = actions.add_parser("set", parents=[common], help="change an account")
    change.add_argument("name")
    _add_flag_pair(change, "active", "--active", "--blocked", "unblock or block the account")
    _add_flag_pair(change, "can_interact", "--can-interact", "--no-can-interact", "allow or forbid uploads")
    change.add_argument("--role", choices=users.ROLES)
    change.add_argument("--password-stdin", action="store_true", help="read a new password from standard input")
    change.set_defaults(run=cmd_user_set)


def _add_key_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    key = commands.add_parser("key", parents=[common], help="manage users' API keys")
    actions = key.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser("add", parents=[common], help="create a key for a user and print it (once)")
    add.add_argument("user")
    add.add_argument("name", help="what the key is for, e.g. 'Open WebUI'")
    add.set_defaults(run=cmd_key_add)

    listing = actions.add_parser("list", parents=[common], help="list keys (never the keys themselves)")
    listing.add_argument("user", nargs="?", help="only this user's keys")
    listing.set_defaults(run=cmd_key_list)

    revoke = actions.add_parser("revoke", parents=[common], help="revoke a key: it stops working at once")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(run=cmd_key_revoke)


def _add_flag_pair(parser: argparse.ArgumentParser, dest: str, yes: str, no: str, text: str) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(yes, dest=dest, action="store_const", const=True, help=text)
    group.add_argument(no, dest=dest, action="store_const", const=False)


# --- serve -------------------------------------------------------------------------------------------------

REQUESTS_SHUTDOWN_SECS = 5.0
"""On SIGTERM, how long requests still being answered may take before their connections are closed (a
client waiting on ``/v1`` for a transcript loses its wait, never its job, which resumes after a restart)."""
DAEMON_UMASK = 0o077
"""Whatever the daemon, its workers or a plugin create is private unless made otherwise on purpose (the
outbox's transcripts are, see :data:`lazyd.inbox.delivery.OUTBOX_FILE_MODE`)."""


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    os.umask(DAEMON_UMASK)
    server = dataclasses.replace(config.server, host=args.host or config.server.host,
                                 port=config.server.port if args.port is None else args.port)
    asyncio.run(serve(dataclasses.replace(config, server=server)))
    return 0


async def serve(config: Config) -> None:
    """Run until SIGINT or SIGTERM, then stop accepting, finish cleanup and return. Under systemd, say
    when it is ready, how the queue stands, that it is alive, and when it stops (:mod:`lazyd.systemd`)."""
    stop = _stop_on_signals()
    if not config.server.listen:
        async with Daemon(config, load_registry(modules=config.plugins.modules)) as daemon:
            log.info("lazyd %s running without HTTP ([server] listen = false), store %s (schema v%d), data in %s",
                     __version__, daemon.store.describe(), await daemon.store.schema_version(), config.data_dir)
            await _until_stopped(stop, daemon.store)
        return
    runner = ApiRunner(create_app(config), handle_signals=False, access_log_class=AccessLogger,
                       shutdown_timeout=REQUESTS_SHUTDOWN_SECS)
    await runner.setup()
    try:
        await _start_site(runner, config)
        await _until_stopped(stop, runner.app[DAEMON].store)
    finally:
        await runner.cleanup()


async def _until_stopped(stop: asyncio.Event, store: Store) -> None:
    """Tell systemd it is ready and keep it informed until ``stop`` is set."""
    notifier = Notifier()
    notifier.ready(await _status_line(store))
    informing = asyncio.create_task(notifier.keep_informed(lambda: _status_line(store)))
    try:
        await stop.wait()
    finally:
        await stop_task(informing)
    log.info("stopping")
    notifier.stopping()


async def _status_line(store: Store) -> str:
    """systemd's ``STATUS=``: the queue at a glance."""
    try:
        counts = await queue_counts(store)
    except (TimeoutError, *DATABASE_ERRORS) as error:
        return f"the database does not answer: {error}"
    finally:
        await store.release_connection()
    return f"{counts.get(QUEUED, 0)} queued, {counts.get(IN_PROGRESS, 0)} transcribing"


async def _start_site(runner: web.AppRunner, config: Config) -> None:
    site = web.TCPSite(runner, config.server.host, config.server.port)
    try:
        await site.start()
    except OSError as error:
        raise CliError(f"cannot listen on {config.server.host}:{config.server.port}: {error.strerror}") from None
    host, port = runner.addresses[0][:2]
    store = runner.app[DAEMON].store
    log.info("lazyd %s listening on http://%s:%d, store %s (schema v%d), data in %s", __version__, host, port,
             store.describe(), await store.schema_version(), config.data_dir)


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, installed before the first request can arrive."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


# --- check-config ------------------------------------------------------------------------------------------

def cmd_check_config(config: Config, args: argparse.Namespace) -> int:
    print(json.dumps(effective_config(config), indent=2))
    return 0


# --- status ------------------------------------------------------------------------------------------------

def cmd_status(config: Config, args: argparse.Namespace) -> int:
    async def facts(store: Store) -> tuple[str, int, dict[str, int]]:
        return store.describe(), await store.schema_version(), await queue_counts(store)

    url, version, queue = with_store(config, facts)
    print(f"data: {config.data_dir}")
    print(f"store: {url} (schema v{version})")
    print("queue: " + (", ".join(f"{count} {state}" for state, count in sorted(queue.items())) or "empty"))
    health = _running_daemon_health(config)
    if isinstance(health, str):
        print(f"daemon: {health}")
        return 0
    backend = health["backend"]
    print(f"daemon: answering at {_daemon_url(config)}, backend {backend.get('backend') or 'none'} "
          f"on {backend.get('device') or '-'}" + (f", problem: {backend['problem']}" if backend.get("problem") else ""))
    for worker in backend.get("workers", []):
        print(f"  worker {worker['slot']}: pid {worker['pid']}, {'loaded' if worker['loaded'] else 'not loaded'}"
              f" {worker['model']}")
    for inbox in health.get("inboxes", []):
        print(f"  inbox {inbox['path']} -> {inbox['outbox']} for {inbox['user']}: {inbox['watching'] or inbox['problem']}")
    return 0


def _daemon_url(config: Config) -> str:
    host = "127.0.0.1" if config.server.host in ("0.0.0.0", "::", "") else config.server.host
    return f"http://{host}:{config.server.port}"


def _running_daemon_health(config: Config) -> dict | str:
    """The daemon's ``/health`` as an admin sees it (with the admin token when one is configured, else the
    public view), or why it could not be read."""
    headers = {"X-Admin-Token": config.auth.admin_token} if config.auth.admin_token else {}
    request = urllib.request.Request(f"{_daemon_url(config)}/health", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)
    except (OSError, ValueError) as error:
        return f"not answering at {_daemon_url(config)} ({getattr(error, 'reason', error)})"


# --- backup and restore ------------------------------------------------------------------------------------

def cmd_backup(config: Config, args: argparse.Namespace) -> int:
    manifest = backup(config, args.destination)
    print(f"backed up {config.data_dir} into {args.destination}")
    if manifest.database_hint:
        print(f"the PostgreSQL store is not in it; dump it beside the backup:\n  {manifest.database_hint}")
    return 0


def cmd_restore(config: Config, args: argparse.Namespace) -> int:
    manifest = restore_files(config, args.source)
    moved = with_store(config, lambda store: point_audio_here(store, manifest, config))
    print(f"restored {args.source} (lazyd {manifest.lazyd_version}, {manifest.created}) into {config.data_dir}; "
          f"{moved} recording(s) now point into it")
    return 0


# --- plugins -----------------------------------------------------------------------------------------------

def cmd_plugins(config: Config, args: argparse.Namespace) -> int:
    registry = load_registry(modules=config.plugins.modules)
    print("plugins:")
    for name, origin in sorted(plugin_origins(registry.plugin_manager).items()):
        backends = _provided_by(name, registry.backend_plugins)
        exporters = _provided_by(name, registry.exporter_plugins)
        print(f"  {name} ({origin}): backends {backends}; exporters {exporters}")
    print(f"host: {probe_host().describe()}")
    print("backends:")
    for backend in registry.backends.values():
        print(f"  {backend.name}")
        for support in backend.devices():
            print(f"    {support.device:<6} {'yes' if support.available else 'no ':<4} {support.reason}")
    try:
        choice = backend_choice(config, registry)
        print(f"chosen: {choice.backend.name} on {choice.device} ({choice.reason})")
    except PluginError as error:
        print(f"chosen: none ({error})")
    return 0


def _provided_by(plugin: str, owners: dict[str, str]) -> str:
    return ", ".join(sorted(item for item, owner in owners.items() if owner == plugin)) or "none"


# --- transcribe --------------------------------------------------------------------------------------------

def cmd_transcribe(config: Config, args: argparse.Namespace) -> int:
    if not args.file.is_file():
        raise CliError(f"{args.file} is not a file")
    exporter = _exporter(config, args.format)
    options = overrides_from({spec.name: getattr(args, spec.name) for spec in option_specs()})
    logging.getLogger().setLevel(max(logging.WARNING, logging.getLogger().level))  # stdout is the transcript
    bar = ProgressBar()
    try:
        result = asyncio.run(transcribe_file(config, args.file.resolve(), options, bar))
    except AudioError as error:
        raise CliError(f"{args.file}: {error}") from None
    finally:
        bar.close()
    if result.transcript.state != "completed":
        raise CliError(f"transcription ended {result.transcript.state}: {result.error or 'no detail'}")
    return write_export(exporter, result.transcript, args)


# --- export ------------------------------------------------------------------------------------------------

def cmd_export(config: Config, args: argparse.Namespace) -> int:
    exporter = _exporter(config, args.format)

    async def load(store: Store) -> Transcript:
        job = await Transcription.aget_or_none(Transcription.id == args.id)
        if job is None:
            raise CliError(f"no transcription with id {args.id}")
        return await load_transcript(store, job)

    transcript = with_store(config, load)
    if not transcript.chunks:
        raise CliError(f"transcription {args.id} has no finished chunk to export yet ({transcript.state})")
    return write_export(exporter, transcript, args)


def _exporter(config: Config, name: str) -> Exporter:
    exporters = load_registry(modules=config.plugins.modules).exporters
    if (exporter := exporters.get(name)) is None:
        raise CliError(f"unknown format {name!r}; known: {', '.join(exporters.names())}")
    return exporter


def write_export(exporter: Exporter, transcript: Transcript, args: argparse.Namespace) -> int:
    options = ExportOptions(timestamps=args.timestamps, max_cue_chars=args.max_cue_chars,
                            max_cue_secs=args.max_cue_secs)
    body = exporter.render(transcript, options)
    if args.output is not None:
        args.output.write_bytes(body)
    else:
        sys.stdout.buffer.write(body if body.endswith(b"\n") or not exporter.media_type.startswith("text")
                                else body + b"\n")
    return 0


# --- user --------------------------------------------------------------------------------------------------

def cmd_user_add(config: Config, args: argparse.Namespace) -> int:
    if problem := username_problem(args.name):
        raise CliError(problem)
    password = read_password(args.password_stdin)
    role = "admin" if args.admin else "user"

    async def add(store: Store) -> users.User:
        return await users.create_user(PasswordHasher(config.auth.bcrypt_rounds), args.name, password,
                                       role=role, can_interact=args.can_interact)

    user = with_store(config, add)
    print(f"created {role} {user.username} (id {user.id})")
    return 0


def cmd_user_list(config: Config, args: argparse.Namespace) -> int:
    found, _ = with_store(config, lambda store: users.list_users(store, 1, 1_000_000))
    print(f"{'id':>5}  {'username':<24} {'role':<6} {'active':<7} {'can_interact':<12} created")
    for user in found:
        print(f"{user.id:>5}  {user.username:<24} {user.role:<6} {_yes(user.active):<7} "
              f"{_yes(user.can_interact):<12} {user.create_date:%Y-%m-%d %H:%M}")
    return 0


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def cmd_user_set(config: Config, args: argparse.Namespace) -> int:
    password = read_password(args.password_stdin) if args.password_stdin else None
    changes = users.UserChanges(password=password, can_interact=args.can_interact, active=args.active,
                                role=args.role)
    if changes == users.UserChanges():
        raise CliError("nothing to change: give --active/--blocked, --can-interact/--no-can-interact, --role "
                       "or --password-stdin")

    async def change(store: Store) -> users.User:
        user = await users.find_user(args.name)
        if user is None:
            raise CliError(f"no user named {args.name!r}")
        return await users.update_user(PasswordHasher(config.auth.bcrypt_rounds), user, changes)

    user = with_store(config, change)
    print(f"updated {user.username}: role {user.role}, active {_yes(user.active)}, "
          f"can_interact {_yes(user.can_interact)}")
    return 0


# --- key -------------------------------------------------------------------------------------------------

def cmd_key_add(config: Config, args: argparse.Namespace) -> int:
    if problem := name_problem(args.name):
        raise CliError(f"key name {problem}")

    async def add(store: Store) -> NewKey:
        return await ApiKeys(store, key_secret(config)).create(await _existing_user(args.user), args.name.strip())

    new = with_store(config, add)
    print(new.key)
    print(f"created key {new.record.id} ({new.record.name}) for {args.user}: it is shown this once",
          file=sys.stderr)
    return 0


def cmd_key_list(config: Config, args: argparse.Namespace) -> int:
    async def listing(store: Store) -> list[tuple[str, dict]]:
        user_id = (await _existing_user(args.user)).id if args.user else None
        return [(owner, key_json(key)) for owner, key in await ApiKeys(store, key_secret(config)).listed(user_id)]

    print(f"{'id':>5}  {'user':<24} {'prefix':<13} {'name':<24} {'created':<16} last used")
    for owner, key in with_store(config, listing):
        print(f"{key['id']:>5}  {owner:<24} {key['prefix']:<13} {key['name']:<24} {key['create_date'][:16]:<16} "
              f"{key['last_used'][:16] if key['last_used'] else 'never'}")
    return 0


def cmd_key_revoke(config: Config, args: argparse.Namespace) -> int:
    if not with_store(config, lambda store: ApiKeys(store, key_secret(config)).revoke(args.id)):
        raise CliError(f"no API key with id {args.id}")
    print(f"revoked key {args.id}")
    return 0


async def _existing_user(name: str) -> users.User:
    user = await users.find_user(name)
    if user is None:
        raise CliError(f"no user named {name!r}")
    return user


# --- models ------------------------------------------------------------------------------------------------

def cmd_models_convert(config: Config, args: argparse.Namespace) -> int:
    from .models.convert import ConversionError, convert

    source = _model_directory(args.source)
    name = args.source if args.source == BUNDLED_NAME else source.name
    destination = Path(args.destination) if args.destination else config.models_path / f"ggml-{name}.bin"
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        dimensions = convert(source, destination)
    except (ConversionError, OSError) as error:
        raise CliError(f"cannot convert {source}: {error}") from None
    kind = "multilingual" if dimensions.multilingual else "English-only"
    print(f"wrote {destination} ({destination.stat().st_size:,} bytes): {kind}, {dimensions.n_audio_layer} "
          f"encoder and {dimensions.n_text_layer} decoder layers of width {dimensions.n_text_state}")
    return 0


def _model_directory(name: str) -> Path:
    if Path(name).is_dir():
        return Path(name)
    if name == BUNDLED_NAME:
        bundled = bundled_model()
        if bundled is None:
            raise CliError("the bundled model comes with the faster-whisper backend, which is not installed")
        return bundled
    raise CliError(f"{name} is not a directory (a CTranslate2 model directory, or {BUNDLED_NAME})")


def cmd_models_list(config: Config, args: argparse.Namespace) -> int:
    from .models.catalog import installed_models

    models = installed_models(config.models_path, bundled_model())
    print(f"models in {config.models_path}:" if models else f"no models in {config.models_path}")
    for model in models:
        print(f"  {model.name:<24} {model.format:<11} {model.backend:<14} {model.size / 1e6:>9,.1f} MB  "
              f"{model.path}")
    return 0


def cmd_models_pull(config: Config, args: argparse.Namespace) -> int:
    from .models.catalog import PullError, pull

    try:
        path = pull(args.name, args.format, config.models_path, args.hub or config.transcription.model_hub)
    except (PullError, OSError) as error:
        raise CliError(f"cannot pull {args.name}: {error}") from None
    print(f"pulled {args.name} ({args.format}) into {path}")
    return 0


def read_password(from_stdin: bool) -> str:
    """From standard input (one line) when asked, else prompted twice on the terminal."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise CliError("the passwords differ")
    else:
        raise CliError("no terminal to ask for a password on: pass --password-stdin and pipe it in")
    if problem := password_problem(password):
        raise CliError(problem)
    return password


def with_store(config: Config, work: Callable[[Store], Awaitable]) -> object:
    """Open the configured store, run ``work(store)``, close it."""

    async def run() -> object:
        store = await Store.open(config.database_url, pool_size=2, timeout_s=config.database.connect_timeout_s)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


# --- entry point -------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(getattr(args, "config", None), data_dir=getattr(args, "data_dir", None))
        configure_logging(config)
        if args.run is not cmd_check_config:
            make_private_dir(config.data_path)
        return args.run(config, args)
    except (CliError, ConfigError, StoreError, SchemaTooNew, PluginError, InboxError, users.UserExists,
            BackupError) as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        return 130


def _fail(message: str) -> int:
    print(f"lazyd: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
