"""Who is calling and what they may touch: bearer tokens, the admin token of ``/auth/patch``, roles,
``can_interact``, and the ownership of transcriptions.

Another user's transcription answers exactly as a missing one does (404), so ids reveal nothing.
"""

from __future__ import annotations

import ipaddress

from aiohttp import web

from ..api_keys import is_api_key
from ..auth import ACCESS, TokenClaims, secrets_equal
from ..store import Transcription, User
from .api import param
from .errors import forbidden, not_found, unauthorized
from .keys import API_KEYS, CONFIG, DAEMON, TOKENS

INVALID_TOKEN = "Invalid or expired token"
TRANSCRIPTION_NOT_FOUND = "Transcription not found"


def bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def user_from_token(request: web.Request, token: str, token_type: str = ACCESS) -> User:
    """The active user a valid token of ``token_type`` belongs to; 401 for anything else."""
    return await user_from_claims(request.app[TOKENS].decode(token, token_type))


async def user_from_key(request: web.Request, key: str) -> User:
    """The active user ``key`` belongs to; 401 for a key revoked, unknown or malformed, or a blocked user."""
    user = await request.app[API_KEYS].user_of(key)
    if user is None:
        raise unauthorized("Invalid or revoked API key")
    if not user.active:
        raise unauthorized("Your account is blocked")
    return user


async def user_from_claims(claims: TokenClaims | None) -> User:
    """The active user decoded ``claims`` name, if the token is still current; 401 for anything else."""
    user = await User.aget_or_none(User.id == claims.user_id) if claims else None
    if user is None:
        raise unauthorized(INVALID_TOKEN)
    if not user.active:  # before the stamp, which the block replaced: the seed says why, as it did
        raise unauthorized("Your account is blocked")
    if user.password_timestamp != claims.password_timestamp:
        raise unauthorized(INVALID_TOKEN)
    return user


async def current_user(request: web.Request, *, admin: bool = False, can_interact: bool = False,
                       api_key: bool = False, query_token: bool = False) -> User:
    """The caller, checked for the admin role or the upload permission when the route needs them.

    The bearer is a login's access token or, on routes that pass ``api_key`` (transcribing and reading
    transcripts), one of the user's API keys. Account changes, admin actions and the keys themselves need
    a login, so that a leaked key can neither take the account over nor make more keys. Routes that pass
    ``query_token`` (what a browser's ``<audio>`` fetches, which cannot send a header) also take the access
    token as ``?token=``; never an API key there, which would outlive the URL in a proxy's log.
    """
    token = bearer_token(request)
    if token is None and query_token:
        token = request.query.get("token")
        if token and is_api_key(token):
            raise unauthorized("An API key goes in the Authorization header, never in the URL")
    if token is None:
        raise unauthorized("Invalid Authorization Header")
    if api_key and is_api_key(token):
        user = await user_from_key(request, token)
    else:
        user = await user_from_token(request, token)
    request[CALLER_ID] = user.id
    if admin and user.role != "admin":
        raise forbidden("Access restricted: this action needs the admin role")
    if can_interact and not user.can_interact:
        raise forbidden("Access restricted: an admin has not allowed this account to upload (can_interact)")
    return user


CALLER_ID = web.RequestKey("caller_id", int)
"""The authenticated user's id, for the request's log line."""


def is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def from_this_machine(request: web.Request) -> bool:
    """The peer is a loopback address and no proxy says it forwards someone else's request."""
    forwarded = "Forwarded" in request.headers or "X-Forwarded-For" in request.headers
    return is_loopback(request.remote or "") and not forwarded


NO_ADMIN_TOKEN = ("The admin token is not configured on this server (auth.admin_token); "
                  "use an admin's bearer token instead")


async def require_admin_token_or_admin(request: web.Request) -> None:
    """The seed's ``secret_admin_token`` (query or ``X-Admin-Token``), or else an admin's bearer token."""
    if _checked_admin_token(request):
        return
    if bearer_token(request) is None:
        raise unauthorized("Invalid Authorization Header") if request.app[CONFIG].auth.admin_token \
            else forbidden(NO_ADMIN_TOKEN)
    await current_user(request, admin=True)


async def is_admin_caller(request: web.Request) -> bool:
    """Whether the caller proved to be an admin (the admin token, or an admin's bearer token). Anonymous
    callers and other users are not; wrong credentials are refused as on every route."""
    if _checked_admin_token(request):
        return True
    if bearer_token(request) is None:
        return False
    return (await current_user(request)).role == "admin"


def _checked_admin_token(request: web.Request) -> bool:
    """True when the request carries the admin token; 403 when it carries a wrong one or none is configured."""
    given = request.query.get("secret_admin_token") or request.headers.get("X-Admin-Token")
    if given is None:
        return False
    configured = request.app[CONFIG].auth.admin_token
    if not configured:
        raise forbidden(NO_ADMIN_TOKEN)
    if not secrets_equal(given, configured):
        raise forbidden("Invalid admin token")
    return True


async def owned_transcription(request: web.Request, query_name: str,
                              query_token: bool = False) -> tuple[User, Transcription]:
    """The caller and their transcription whose id the query parameter ``query_name`` holds; 404 when it is
    missing or someone else's."""
    job_id = param(request, query_name)
    user = await current_user(request, api_key=True, query_token=query_token)
    job = await request.app[DAEMON].owned_job(user.id, job_id)
    if job is None:
        raise not_found(TRANSCRIPTION_NOT_FOUND)
    return user, job
