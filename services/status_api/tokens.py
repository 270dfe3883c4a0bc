"""``POST /v1/accounts/{account_id}/tokens`` (service token only): mint a browser token for one
account. The format and its rules are in ``token_codec.py`` (and docs/API.md)."""

from __future__ import annotations

from aiohttp import web

from services.status_api import schema
from services.status_api import validation as v
from services.status_api.auth import require_service
from services.status_api.state import api
from services.status_api.token_codec import (
    BrowserClaims,
    SigningKey,
    fingerprint,
    looks_like_browser_token,
    mint,
    signing_keys,
    verify,
)
from shared.http import json_response
from shared.models import iso, now_ms

__all__ = ["BrowserClaims", "SigningKey", "add_routes", "fingerprint", "looks_like_browser_token", "mint",
           "signing_keys", "verify"]


# --- the route ----------------------------------------------------------------------------------

async def create_token(request: web.Request) -> web.Response:
    require_service(request)
    account = v.account_id(request.match_info["account_id"])
    settings = api(request).settings
    data = await v.body(request, schema.NewBrowserToken, optional=True,
                        limits={"ttl_s": settings.browser_token_max_ttl_s})
    ttl_s = data.ttl_s or settings.browser_token_ttl_s
    issued_s = now_ms() // 1000
    token = mint(signing_keys(settings.token_signing_key), account, issued_s, issued_s + ttl_s)
    return json_response({"token": token, "expires_at": iso((issued_s + ttl_s) * 1000), "account_id": account},
                         201)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/accounts/{account_id}/tokens", create_token)
