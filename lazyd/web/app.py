"""The application factory shared by ``lazyd serve`` and the tests."""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from aiohttp import web

from ..api_keys import ApiKeys, key_secret
from ..auth import PasswordHasher, TokenIssuer, load_or_create_secret
from ..config import Config
from ..daemon import Daemon
from ..registry import Registry, load_registry
from .errors import error_middleware, tag_response
from .request_metrics import count_requests
from .keys import API_KEYS, CONFIG, DAEMON, DOCUMENT, ENDPOINTS, HASHER, REGISTRY, SOCKETS, TOKENS
from .openapi import build_document
from .routes import ENDPOINTS as ROUTE_TABLE
from .ws import close_sockets

log = logging.getLogger(__name__)


def create_app(config: Config, registry: Registry | None = None) -> web.Application:
    """The daemon's application; plugins are loaded and the inboxes checked here, so a broken one stops
    start-up before anything runs."""
    app = web.Application(middlewares=[count_requests, error_middleware],
                          client_max_size=config.server.max_json_body_kb * 1024)
    app[CONFIG] = config
    app[TOKENS] = token_issuer(config)
    app[REGISTRY] = registry or load_registry(modules=config.plugins.modules)
    daemon = Daemon(config, app[REGISTRY])
    app[ENDPOINTS] = ROUTE_TABLE
    app.add_routes(endpoint.route() for endpoint in ROUTE_TABLE)
    app[DOCUMENT] = build_document(app)
    app.on_response_prepare.append(tag_response)
    app[SOCKETS] = weakref.WeakSet()
    app.on_shutdown.append(close_sockets)
    app.cleanup_ctx.append(lambda app: _running(app, daemon))
    app.cleanup_ctx.append(_password_hasher)
    return app


def token_issuer(config: Config) -> TokenIssuer:
    secret = config.auth.jwt_secret or load_or_create_secret(config.data_path / "secrets" / "jwt.key")
    return TokenIssuer(
        secret=secret,
        access_ttl=timedelta(minutes=config.auth.access_token_minutes),
        refresh_ttl=timedelta(days=config.auth.refresh_token_days),
    )


async def _running(app: web.Application, daemon: Daemon) -> AsyncIterator[None]:
    async with daemon:
        app[DAEMON] = daemon
        app[API_KEYS] = ApiKeys(daemon.store, key_secret(app[CONFIG]))
        yield


async def _password_hasher(app: web.Application) -> AsyncIterator[None]:
    """bcrypt gets its own threads, one per core and at low priority: a burst of logins queues among itself
    and uses idle CPU, while the event loop and the database threads win the CPU whenever they need it."""
    executor = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="bcrypt",
                                  initializer=_lower_thread_priority)
    app[HASHER] = PasswordHasher(app[CONFIG].auth.bcrypt_rounds, executor,
                                 before_work=app[DAEMON].store.release_connection)
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
