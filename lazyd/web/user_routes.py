"""Changing and listing accounts: the seed's ``PATCH /auth/patch``, and ``GET /users`` and
``PATCH /users/{id}`` for admins."""

from __future__ import annotations

from aiohttp import web

from .. import users
from ..store import User
from ..validation import Field, password_problem
from .api import param
from .body import json_object, pagination
from .errors import conflict, not_found
from .keys import DAEMON, HASHER
from .security import current_user, require_admin_token_or_admin
from .shapes import page_json, user_json

SEED_CHANGES = (Field("password", str, check=password_problem), Field("can_interact", bool))
ADMIN_CHANGES = (
    Field("password", str, check=password_problem),
    Field("can_interact", bool),
    Field("active", bool),
    Field("role", str, choices=users.ROLES),
)


async def seed_patch(request: web.Request) -> web.Response:
    """The seed's ``PATCH /auth/patch?user_id=N``: password and ``can_interact`` of any user."""
    user_id = param(request, "user_id")
    await require_admin_token_or_admin(request)
    return await _change_user(request, user_id, await json_object(request))


async def list_users(request: web.Request) -> web.Response:
    await current_user(request, admin=True)
    page, size = pagination(request)
    sort, order = param(request, "sort"), param(request, "order")
    found, total = await users.list_users(request.app[DAEMON].store, page, size, sort, order)
    return web.json_response(page_json(page, size, total, "users", [user_json(u) for u in found]))


async def patch_user(request: web.Request) -> web.Response:
    await current_user(request, admin=True)
    user_id = param(request, "id")
    return await _change_user(request, user_id, await json_object(request))


async def _change_user(request: web.Request, user_id: int, changes: dict) -> web.Response:
    """Apply validated ``changes`` to the user ``user_id`` and answer with the user; 404 when there is none."""
    user = await User.aget_or_none(User.id == user_id)
    if user is None:
        raise not_found("User not found")
    wanted = users.UserChanges(**changes)
    if await users.leaves_no_admin(user, wanted):
        raise conflict("This is the last active admin: make another user an admin first")
    return web.json_response(user_json(await users.update_user(request.app[HASHER], user, wanted)))
