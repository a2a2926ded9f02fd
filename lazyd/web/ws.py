"""``GET /ws``: a user's live events (state changes, progress, segments, chunks) over a WebSocket.

Authenticate with the bearer token (``Authorization`` header, or ``?token=`` for browsers, which cannot
set headers on a WebSocket). Browsers must come from this server's own origin or a trusted one. To catch
up after a reconnect, pass ``?stream=S&since=N`` from the last event seen: the missed events are replayed
in order, or a ``resync`` event says to reload state over HTTP because they are no longer available.
The socket lives no longer than its access token: it is closed with code 4001 when the token expires,
and with 4003 within ``ACCESS_RECHECK_SECS`` of its user being blocked or deleted or changing password.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web

from ..auth import ACCESS, TokenClaims
from ..jobs.events import Event, LiveEvents
from ..store import DATABASE_ERRORS, Store
from .api import param
from .errors import ApiError, forbidden, unauthorized
from .keys import CONFIG, DAEMON, SOCKETS, TOKENS
from .security import bearer_token, is_loopback, user_from_claims


TOKEN_EXPIRED = 4001
"""Close code when the access token the socket was opened with expires; the client reconnects."""
ACCESS_REVOKED = 4003
"""Close code when the user was blocked or deleted or changed password: reconnecting needs a new login."""
ACCESS_RECHECK_SECS = 10.0
"""How often an open socket re-reads its user, since a block or password change may come from any process."""

log = logging.getLogger(__name__)


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_allowed(request: web.Request) -> bool:
    """A browser's ``Origin`` (scheme, host and port) must be one of ``server.trusted_origins`` or the
    address this connection reached: the local address of its socket, this machine's host name, and the
    loopback names when that address is a loopback one. The ``Host`` header is the client's to choose
    (a DNS-rebinding page sends its own), so it never counts. No header: not a browser."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    given = _origin_parts(origin)
    trusted = {_origin_parts(item) for item in request.app[CONFIG].server.trusted_origins}
    return given is not None and (given in trusted or given in _own_origins(request))


def _origin_parts(origin: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an origin, with the scheme's default port filled in; ``None`` if unusable."""
    try:
        parts = urlsplit(origin.strip())
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    return (scheme, host, port) if host and port else None


def _own_origins(request: web.Request) -> set[tuple[str, str, int]]:
    """The origins a page served by this very socket can have (lazyd itself speaks plain HTTP)."""
    address = request.transport.get_extra_info("sockname") if request.transport else None
    if not address:
        return set()
    host, port = str(address[0]).lower(), int(address[1])
    names = {host, socket.gethostname().lower()}
    if is_loopback(host):
        names |= LOOPBACK_NAMES
    return {("http", name, port) for name in names}


async def events(request: web.Request) -> web.StreamResponse:
    token = bearer_token(request) or request.query.get("token")
    if not token:
        raise unauthorized("Invalid Authorization Header")
    claims = request.app[TOKENS].decode(token, ACCESS)
    user = await user_from_claims(claims)
    if not origin_allowed(request):
        raise forbidden("This origin may not open the event stream (see server.trusted_origins)")
    since = param(request, "since")
    store = request.app[DAEMON].store
    await store.release_connection()
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    hub = request.app[DAEMON].events
    with request.app[DAEMON].metrics.websockets.track_inprogress():
        async with hub.subscription(user.id) as queue:
            await _serve(ws, hub, queue, store, claims, param(request, "stream"), since)
    return ws


async def _serve(ws: web.WebSocketResponse, hub: LiveEvents, queue: asyncio.Queue[Event | None], store: Store,
                 claims: TokenClaims, stream: str, since: int | None) -> None:
    """Catch the socket up, then forward the user's events until it closes, the token expires or the user's
    access is revoked."""
    last = await _catch_up(ws, hub, claims.user_id, stream, since)
    closed = asyncio.create_task(_until_closed(ws))
    revoked = asyncio.create_task(_until_revoked(store, claims))
    try:
        async with asyncio.timeout(max(claims.expires_at - time.time(), 0)):
            await _forward(ws, hub, queue, last, (closed, revoked))
        if revoked.done():
            await ws.close(code=ACCESS_REVOKED, message=b"access revoked: log in again")
    except TimeoutError:
        await ws.close(code=TOKEN_EXPIRED, message=b"token expired: reconnect with a fresh one and since")
    finally:
        closed.cancel()
        revoked.cancel()


async def close_sockets(app: web.Application) -> None:
    """``on_shutdown``: every open socket is told the server is going away (1001); clients reconnect with
    ``since`` once it is back."""
    for ws in list(app[SOCKETS]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down: reconnect with since")


async def _catch_up(ws: web.WebSocketResponse, hub: LiveEvents, user_id: int, stream: str | None,
                    since: int | None) -> int:
    """Send the greeting or the replay; return the sequence number the live stream continues after."""
    if since is None or (missed := await hub.replay(user_id, stream or "", since)) is None:
        last = await hub.latest(user_id)
        await ws.send_json({"type": "hello" if since is None else "resync", "stream": hub.stream, "seq": last})
        return last
    for event in missed:
        await ws.send_json(event.to_json(hub.stream))
    return missed[-1].seq if missed else since


async def _forward(ws: web.WebSocketResponse, hub: LiveEvents, queue: asyncio.Queue[Event | None], last: int,
                   endings: tuple[asyncio.Task[None], ...]) -> None:
    """Send live events until one of ``endings`` finishes or the subscriber falls too far behind."""
    while not any(ending.done() for ending in endings):
        getter = asyncio.ensure_future(queue.get())
        try:
            done, _ = await asyncio.wait({getter, *endings}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            getter.cancel()
        if getter not in done:
            return
        event = getter.result()
        if event is None:
            await ws.close(code=4008, message=b"too slow: reconnect with since")
            return
        if event.seq > last:
            await ws.send_json(event.to_json(hub.stream))


async def _until_revoked(store: Store, claims: TokenClaims) -> None:
    """Return once the token's user is blocked or deleted or has changed password; a database outage is no verdict."""
    while True:
        await asyncio.sleep(ACCESS_RECHECK_SECS)
        try:
            await user_from_claims(claims)
        except ApiError:  # 401: blocked, deleted, or the password changed
            return
        except DATABASE_ERRORS as error:
            log.warning("could not recheck user %s of an open event socket: %s", claims.user_id, error)
        finally:
            await store.release_connection()


async def _until_closed(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) client messages until the socket closes."""
    with contextlib.suppress(asyncio.CancelledError):
        async for message in ws:
            if message.type == WSMsgType.ERROR:
                return
