"""The status API's OpenAPI 3.1 description, served at ``GET /openapi.json`` (no token needed: it
describes routes, never data).

The document is ``openapi.json`` beside this module, generated from the models of ``schema.py`` by
``make schema`` (``schema_gen.py``); ``tests/test_schema.py`` fails when it is stale. ``tests/test_openapi.py``
keeps it honest: every ``/v1`` route the app serves must be in it (and nothing else), and schemathesis calls
the running API with what the document allows and checks the answers against it.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

SPEC_PATH = Path(__file__).with_name("openapi.json")


def add_routes(app: web.Application) -> None:
    body = SPEC_PATH.read_bytes()  # read once, at startup: a missing file fails fast

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app.router.add_get("/openapi.json", openapi)
