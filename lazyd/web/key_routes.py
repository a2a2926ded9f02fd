"""``/auth/keys``: a user's API keys. Managing keys takes a login's access token, never a key, so that a
leaked key cannot make more of itself or outlive its revocation."""

from __future__ import annotations

from aiohttp import web

from ..api_keys import name_problem
from ..validation import Field
from .api import param
from .body import json_object
from .errors import not_found
from .keys import API_KEYS
from .security import current_user
from .shapes import key_json

NEW_KEY = (Field("name", str, required=True, check=name_problem),)


async def create(request: web.Request) -> web.Response:
    """The new key, whole, in this answer only."""
    user = await current_user(request)
    body = await json_object(request)
    new = await request.app[API_KEYS].create(user, body["name"].strip())
    return web.json_response({**key_json(new.record), "key": new.key}, status=201,
                             headers={"Cache-Control": "no-store"})


async def list_keys(request: web.Request) -> web.Response:
    user = await current_user(request)
    return web.json_response({"keys": [key_json(key) for key in await request.app[API_KEYS].of_user(user.id)]})


async def revoke(request: web.Request) -> web.Response:
    """Another user's key answers as a missing one does (404)."""
    user = await current_user(request)
    key_id = param(request, "id")
    if not await request.app[API_KEYS].revoke(key_id, user.id):
        raise not_found("API key not found")
    return web.Response(status=204)
