"""The web page for people, under ``/app/``: plain HTML, CSS and JavaScript modules shipped in the package
(``static/app``), no build step and no request anywhere but this daemon. The page speaks only the public
API, as any client does.

Its files are served with a strict Content-Security-Policy: scripts, styles, media and connections from
this origin only, no inline code, no frames. The page sends its access token in the ``Authorization``
header, and as ``?token=`` only where a browser cannot send a header (the WebSocket and ``<audio>``).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from .api import param

APP_DIR = Path(__file__).resolve().parent / "static" / "app"
TYPES_BY_SUFFIX = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
ASSETS = tuple(sorted(path.name for path in APP_DIR.iterdir() if path.suffix in TYPES_BY_SUFFIX))
ASSET_MEDIA = tuple(TYPES_BY_SUFFIX.values())
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self'", "media-src 'self'",
    "connect-src 'self'", "manifest-src 'self'", "base-uri 'none'", "form-action 'none'",
    "frame-ancestors 'none'"))
COMMON_HEADERS = {"Cache-Control": "no-cache"}
"""``no-cache`` revalidates (the files carry ``ETag`` and ``Last-Modified``), so an upgrade is seen at once."""
PAGE_HEADERS = COMMON_HEADERS | {"Content-Type": "text/html; charset=utf-8",
                                 "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                                 "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


async def to_page(request: web.Request) -> web.Response:
    """``/app`` -> ``/app/``, so that the page's relative links resolve under it."""
    raise web.HTTPPermanentRedirect("app/")


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(APP_DIR / "index.html", headers=PAGE_HEADERS)


async def asset(request: web.Request) -> web.FileResponse:
    name = param(request, "asset")
    return web.FileResponse(APP_DIR / name, headers=COMMON_HEADERS | {
        "Content-Type": TYPES_BY_SUFFIX[Path(name).suffix], "Content-Security-Policy": CONTENT_SECURITY_POLICY})
