"""The seed's ``/auth`` routes, plus deleting one's own account (``/auth/patch`` is with the user routes)."""

from __future__ import annotations

from aiohttp import web

from .. import users
from ..auth import REFRESH
from ..daemon import OwnsInbox
from ..store import User
from ..validation import Field, password_problem, username_problem
from .body import json_object
from .errors import conflict, forbidden, unauthorized
from .keys import CONFIG, DAEMON, HASHER, TOKENS
from .security import current_user, user_from_token
from .shapes import user_json

CREDENTIALS = (
    Field("username", str, required=True, check=username_problem),
    Field("password", str, required=True, check=password_problem),
)
REFRESH_TOKEN = (Field("refresh_token", str, required=True),)


async def registration(request: web.Request) -> web.Response:
    """Whether ``POST /auth/register`` is open (a login page offers it only then)."""
    return web.json_response({"open": request.app[CONFIG].auth.open_registration})


async def register(request: web.Request) -> web.Response:
    if not request.app[CONFIG].auth.open_registration:
        raise forbidden("Registration is closed on this server; ask an admin for an account")
    body = await json_object(request)
    try:
        user = await users.create_user(request.app[HASHER], body["username"], body["password"])
    except users.UserExists as error:
        raise conflict(str(error)) from None
    return web.json_response(user_json(user), status=201)


async def login(request: web.Request) -> web.Response:
    body = await json_object(request)
    user = await users.check_credentials(request.app[HASHER], body["username"], body["password"])
    if user is None:
        raise unauthorized("Incorrect username or password")
    if not user.active:
        raise unauthorized("Your account is blocked")
    return _token_response(request, user)


async def refresh(request: web.Request) -> web.Response:
    body = await json_object(request)
    user = await user_from_token(request, body["refresh_token"], REFRESH)
    return _token_response(request, user)


def _token_response(request: web.Request, user: User) -> web.Response:
    """A new token pair, which no cache along the way may keep."""
    return web.json_response(request.app[TOKENS].issue_pair(user.id, user.password_timestamp),
                             headers={"Cache-Control": "no-store"})


async def info(request: web.Request) -> web.Response:
    return web.json_response(user_json(await current_user(request, api_key=True)))


async def delete_self(request: web.Request) -> web.Response:
    """``DELETE /auth/info``: the caller's account, transcriptions and audio are removed."""
    user = await current_user(request)
    try:
        await request.app[DAEMON].delete_user(user)
    except OwnsInbox as error:
        raise conflict(str(error)) from None
    return web.Response(status=204)
