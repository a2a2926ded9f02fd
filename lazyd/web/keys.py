"""Typed application state: everything a handler needs hangs off the app under one of these keys."""

from __future__ import annotations

from aiohttp import web

from ..auth import PasswordHasher, TokenIssuer
from ..config import Config
from ..store import Store

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
HASHER = web.AppKey("hasher", PasswordHasher)
TOKENS = web.AppKey("tokens", TokenIssuer)
