"""Typed application state: everything a handler needs hangs off the app under one of these keys."""

from __future__ import annotations

import weakref
from typing import Any

from aiohttp import web

from ..api_keys import ApiKeys
from ..auth import PasswordHasher, TokenIssuer
from ..config import Config
from ..daemon import Daemon
from ..registry import Registry

CONFIG = web.AppKey("config", Config)
REGISTRY = web.AppKey("registry", Registry)
DAEMON = web.AppKey("daemon", Daemon)
"""The running system: store, events, jobs, scheduler, inboxes (set while the app runs)."""
HASHER = web.AppKey("hasher", PasswordHasher)
TOKENS = web.AppKey("tokens", TokenIssuer)
API_KEYS = web.AppKey("api_keys", ApiKeys)
"""Users' API keys (set while the app runs: they live in the store)."""
SOCKETS = web.AppKey("sockets", weakref.WeakSet)
"""The open event WebSockets, closed with 1001 (going away) when the daemon stops."""
ENDPOINTS = web.AppKey("endpoints", tuple)
"""The route table the app was built from (:data:`lazyd.web.routes.ENDPOINTS`)."""
DOCUMENT = web.AppKey("openapi_document", dict[str, Any])
"""``GET /openapi.json`` (:func:`lazyd.web.openapi.build_document`): made with the app, so that a route
the document cannot describe stops start-up."""
