"""``GET /openapi.json`` and its reader at ``GET /docs`` (Swagger UI, shipped in the package: no CDN)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from .api import param
from .keys import DOCUMENT

READER_DIR = Path(__file__).resolve().parent / "static" / "docs"
ASSET_TYPES = {"swagger-ui-bundle.js": "text/javascript", "reader.js": "text/javascript", "swagger-ui.css": "text/css"}
ASSETS = tuple(ASSET_TYPES)
ASSET_MEDIA = tuple(dict.fromkeys(ASSET_TYPES.values()))


async def openapi(request: web.Request) -> web.Response:
    """Generated from the route table (:data:`lazyd.web.routes.ENDPOINTS`) when the app was made."""
    return web.json_response(request.app[DOCUMENT])


async def reader(request: web.Request) -> web.FileResponse:
    return web.FileResponse(READER_DIR / "index.html", headers={"Content-Type": "text/html; charset=utf-8"})


async def asset(request: web.Request) -> web.FileResponse:
    name = param(request, "asset")
    return web.FileResponse(READER_DIR / name, headers={"Content-Type": ASSET_TYPES[name]})
