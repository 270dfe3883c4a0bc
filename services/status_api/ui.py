"""The reference integrations page: static ES modules under ``ui/``, served at ``/ui/``.

The page itself needs no token: it is the same few files for everybody. It reads a short-lived browser
token from its own URL (``/ui/?token=...``) and uses it for every API call and for the live stream, so
what it shows is exactly what that token may see. ``GET /v1/me`` (``views.py``) tells the page which account the
token belongs to and whether it may create connections (the token is opaque to the browser: the page
decodes nothing).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from shared.errors import NotFound

UI_DIR = Path(__file__).with_name("ui")
FILE_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

# The page is framed by the product (so no frame-ancestors 'none'), but loads nothing from elsewhere
# and runs no inline script. The token is in the page's URL: never send it on as a Referer.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _file_response(name: str, *, cache: str) -> web.Response:
    path = UI_DIR / name
    content_type = FILE_TYPES.get(path.suffix)
    # Only plain file names from the ui folder: no sub-paths, no dot files, no other types.
    if content_type is None or "/" in name or name.startswith(".") or not path.is_file():
        raise NotFound("Not Found", code="not_found")
    headers = {**SECURITY_HEADERS, "Cache-Control": cache}
    return web.Response(body=path.read_bytes(), content_type=content_type, charset="utf-8", headers=headers)


async def index(request: web.Request) -> web.Response:
    # no-store: the URL carries a token, and a stale page must never outlive a deploy.
    return _file_response("index.html", cache="no-store")


async def asset(request: web.Request) -> web.Response:
    return _file_response(request.match_info["name"], cache="no-cache")


async def to_index(request: web.Request) -> web.Response:
    raise web.HTTPPermanentRedirect(request.rel_url.with_path("/ui/").with_query(request.rel_url.query))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/ui", to_index)
    r.add_get("/ui/", index)
    r.add_get("/ui/{name}", asset)
