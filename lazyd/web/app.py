"""The application factory shared by ``lazyd serve`` and the tests."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from aiohttp import web

from ..auth import PasswordHasher, TokenIssuer, load_or_create_secret
from ..config import Config
from ..store import Store
from . import auth_routes, system_routes, user_routes
from .errors import error_middleware
from .keys import CONFIG, HASHER, STORE, TOKENS

log = logging.getLogger(__name__)

ROUTES = (
    web.get("/", system_routes.health),
    web.post("/auth/register", auth_routes.register),
    web.post("/auth/login", auth_routes.login),
    web.post("/auth/refresh", auth_routes.refresh),
    web.get("/auth/info", auth_routes.info),
    web.delete("/auth/info", auth_routes.delete_self),
    web.patch("/auth/patch", auth_routes.patch),
    web.get("/users", user_routes.list_users),
    web.patch("/users/{id}", user_routes.patch_user),
)


def create_app(config: Config) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=config.server.max_json_body_kb * 1024)
    app[CONFIG] = config
    app[TOKENS] = token_issuer(config)
    app.add_routes(ROUTES)
    app.cleanup_ctx.append(_password_hasher)
    app.cleanup_ctx.append(_store)
    return app


def token_issuer(config: Config) -> TokenIssuer:
    secret = config.auth.jwt_secret or load_or_create_secret(config.data_path / "secrets" / "jwt.key")
    return TokenIssuer(
        secret=secret,
        access_ttl=timedelta(minutes=config.auth.access_token_minutes),
        refresh_ttl=timedelta(days=config.auth.refresh_token_days),
    )


async def _password_hasher(app: web.Application) -> AsyncIterator[None]:
    """bcrypt gets its own low-priority threads, one core fewer than the machine has, so that a burst of
    logins queues among itself while the event loop and the database threads keep a core and win it."""
    executor = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 1) - 1), thread_name_prefix="bcrypt",
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
