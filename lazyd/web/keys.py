"""Typed application state: everything a handler needs hangs off the app under one of these keys."""

from __future__ import annotations

from aiohttp import web

from ..auth import PasswordHasher, TokenIssuer
from ..config import Config
from ..inbox import Inbox
from ..jobs.events import EventHub
from ..jobs.scheduler import Scheduler
from ..jobs.states import JobStates, Quota
from ..registry import Registry
from ..store import Store

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
HASHER = web.AppKey("hasher", PasswordHasher)
TOKENS = web.AppKey("tokens", TokenIssuer)
REGISTRY = web.AppKey("registry", Registry)
EVENTS = web.AppKey("events", EventHub)
STATES = web.AppKey("states", JobStates)
UPLOAD_QUOTA = web.AppKey("upload_quota", Quota)
SCHEDULER = web.AppKey("scheduler", Scheduler)
BACKEND_STATUS = web.AppKey("backend_status", dict)
INBOXES = web.AppKey("inboxes", list[Inbox])
