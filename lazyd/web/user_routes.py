"""Admin user management beyond the seed: ``GET /users`` and ``PATCH /users/{id}``."""

from __future__ import annotations

from aiohttp import web

from .. import users
from ..store import User
from ..validation import Field, parse_int, password_problem, query_choice
from .body import json_object, page_json, pagination
from .errors import not_found
from .keys import HASHER
from .security import current_user

ADMIN_CHANGES = (
    Field("password", str, check=password_problem),
    Field("can_interact", bool),
    Field("active", bool),
    Field("role", str, choices=users.ROLES),
)


async def list_users(request: web.Request) -> web.Response:
    await current_user(request, admin=True)
    page, size = pagination(request)
    sort = query_choice(request.query, "sort", users.SORT_KEYS)
    order = query_choice(request.query, "order", users.ORDERS)
    found, total = await users.list_users(page, size, sort, order)
    return web.json_response(page_json(page, size, total, "users", [users.user_json(u) for u in found]))


async def patch_user(request: web.Request) -> web.Response:
    await current_user(request, admin=True)
    user_id = _path_id(request)
    return await change_user(request, user_id, await json_object(request, *ADMIN_CHANGES))


async def change_user(request: web.Request, user_id: int, changes: dict) -> web.Response:
    """Apply validated ``changes`` to the user ``user_id`` and answer with the user; 404 when there is none."""
    user = await User.aget_or_none(User.id == user_id)
    if user is None:
        raise not_found("User not found")
    updated = await users.update_user(request.app[HASHER], user, users.UserChanges(**changes))
    return web.json_response(users.user_json(updated))


def _path_id(request: web.Request) -> int:
    return parse_int(request.match_info["id"], ("path", "id"))
