"""The application factory shared by ``lazyd serve`` and the tests."""

from __future__ import annotations

import asyncio
import logging
from functools import partial
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from aiohttp import web

from ..aio import stop_task
from ..auth import PasswordHasher, TokenIssuer, load_or_create_secret
from ..config import Config
from ..inbox import Inbox, InboxError, check_inbox
from ..store import Store, User
from ..jobs.events import EventHub
from ..jobs.ingest import upload_quota
from ..jobs.scheduler import Scheduler
from ..jobs.setup import retry_policy, worker_setup
from ..jobs.states import JobStates
from ..registry import PluginError, Registry, load_registry
from . import auth_routes, export_routes, system_routes, transcription_routes, user_routes, worker_routes, ws
from .errors import error_middleware
from .keys import (BACKEND_STATUS, CONFIG, EVENTS, HASHER, INBOXES, REGISTRY, SCHEDULER, STATES, STORE, TOKENS,
                   UPLOAD_QUOTA)

log = logging.getLogger(__name__)

ROUTES = (
    web.get("/", system_routes.health),
    web.get("/health", system_routes.details),
    web.post("/auth/register", auth_routes.register),
    web.post("/auth/login", auth_routes.login),
    web.post("/auth/refresh", auth_routes.refresh),
    web.get("/auth/info", auth_routes.info),
    web.delete("/auth/info", auth_routes.delete_self),
    web.patch("/auth/patch", auth_routes.patch),
    web.get("/users", user_routes.list_users),
    web.patch("/users/{id}", user_routes.patch_user),
    web.post("/upload-audiofile", transcription_routes.upload),
    web.get("/transcriptions", transcription_routes.list_transcriptions),
    web.get("/transcript", transcription_routes.transcript),
    web.delete("/transcript", transcription_routes.delete),
    web.get("/transcript/info", transcription_routes.info),
    web.get("/transcript/segments", transcription_routes.segments),
    web.post("/transcript/cancel", transcription_routes.cancel),
    web.post("/transcript/retry", transcription_routes.retry),
    web.post("/transcript/export", export_routes.export),
    web.get("/transcript/export", export_routes.export),
    web.get("/formats", export_routes.formats),
    web.post("/worker/transcription_status", worker_routes.transcription_status),
    web.get("/ws", ws.events),
)


def create_app(config: Config, registry: Registry | None = None) -> web.Application:
    """The daemon's application; plugins are loaded here, so a broken one stops start-up."""
    app = web.Application(middlewares=[error_middleware], client_max_size=config.server.max_json_body_kb * 1024)
    app[CONFIG] = config
    app[TOKENS] = token_issuer(config)
    app[REGISTRY] = registry or load_registry(modules=config.plugins.modules)
    for spec in config.inbox:
        check_inbox(spec, app[REGISTRY].exporters)
    app[UPLOAD_QUOTA] = upload_quota(config)
    app[EVENTS] = EventHub()
    app.add_routes(ROUTES)
    app.cleanup_ctx.append(_password_hasher)
    app.cleanup_ctx.append(_store)
    app.cleanup_ctx.append(_jobs)
    return app


def token_issuer(config: Config) -> TokenIssuer:
    secret = config.auth.jwt_secret or load_or_create_secret(config.data_path / "secrets" / "jwt.key")
    return TokenIssuer(
        secret=secret,
        access_ttl=timedelta(minutes=config.auth.access_token_minutes),
        refresh_ttl=timedelta(days=config.auth.refresh_token_days),
    )


async def _password_hasher(app: web.Application) -> AsyncIterator[None]:
    """bcrypt gets its own threads, one per core and at low priority: a burst of logins queues among itself
    and uses idle CPU, while the event loop and the database threads win the CPU whenever they need it."""
    executor = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="bcrypt",
                                  initializer=_lower_thread_priority)
    app[HASHER] = PasswordHasher(app[CONFIG].auth.bcrypt_rounds, executor)
    try:
        yield
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def _lower_thread_priority() -> None:
    """On Linux a thread is a schedulable task of its own: nice it so CPU-bound hashing yields to serving."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        log.debug("cannot lower the priority of the bcrypt threads on this system")


async def _store(app: web.Application) -> AsyncIterator[None]:
    database = app[CONFIG].database
    app[STORE] = await Store.open(app[CONFIG].database_url, pool_size=database.pool_size,
                                  timeout_s=database.connect_timeout_s)
    try:
        yield
    finally:
        await app[STORE].close()


async def _jobs(app: web.Application) -> AsyncIterator[None]:
    """The state machine, the watched folders, and the scheduler when this daemon transcribes."""
    config = app[CONFIG]
    app[STATES] = JobStates(app[STORE], app[EVENTS], retry_policy(config), on_finished=partial(_finished, app))
    app[INBOXES] = await _inboxes(app)
    app[BACKEND_STATUS] = {"scheduler": config.scheduler.enabled}
    tasks = [task for task in [_start_scheduler(app) if config.scheduler.enabled else None] if task]
    tasks += [asyncio.create_task(inbox.run(), name=f"inbox {inbox.folder}") for inbox in app[INBOXES]]
    for task in tasks:
        task.add_done_callback(_report_end)
    try:
        yield
    finally:
        for task in tasks:
            await stop_task(task)


def _finished(app: web.Application, job: dict) -> None:
    """A transcription reached a final state: tell the plugins, and the inboxes it may belong to."""
    app[REGISTRY].hook.lazyd_transcription_finished(transcription=job)
    for inbox in app[INBOXES]:
        inbox.poke()


async def _inboxes(app: web.Application) -> list[Inbox]:
    """One watcher per ``[[inbox]]``; an unknown owner stops start-up before anything runs."""
    config = app[CONFIG]
    inboxes = []
    for spec in config.inbox:
        owner = await User.aget_or_none(User.username == spec.user)
        if owner is None:
            raise InboxError(f"inbox {spec.path}: there is no user {spec.user!r} (create it with lazyd user add)")
        inboxes.append(Inbox(spec, owner, config, app[STATES], app[REGISTRY].exporters,
                             wake_scheduler=lambda: app[SCHEDULER].wake() if SCHEDULER in app else None))
    return inboxes


def _start_scheduler(app: web.Application) -> asyncio.Task[None] | None:
    try:
        setup, choice = worker_setup(app[CONFIG], app[REGISTRY])
    except PluginError as error:
        log.error("not transcribing: %s", error)
        app[BACKEND_STATUS]["problem"] = str(error)
        return None
    log.info("backend %s on %s (%s)", choice.backend.name, choice.device, choice.reason)
    app[BACKEND_STATUS].update(backend=choice.backend.name, device=choice.device, reason=choice.reason)
    app[SCHEDULER] = Scheduler(app[CONFIG], app[STATES], setup)
    return asyncio.create_task(app[SCHEDULER].run(), name="scheduler")


def _report_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped", task.get_name(), exc_info=task.exception())
