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
    CreateGrant,
    SigningKey,
    fingerprint,
    looks_like_browser_token,
    mint,
    signing_keys,
    verify,
)
from shared.errors import BadRequest
from shared.http import json_response
from shared.models import iso, now_ms
from shared.providers import PROVIDERS

DEFAULT_CREATE_LIMIT = 3

__all__ = ["BrowserClaims", "CreateGrant", "SigningKey", "add_routes", "fingerprint", "looks_like_browser_token",
           "mint", "signing_keys", "verify"]


# --- the route ----------------------------------------------------------------------------------

async def create_token(request: web.Request) -> web.Response:
    require_service(request)
    account = v.account_id(request.match_info["account_id"])
    settings = api(request).settings
    data = await v.body(request, schema.NewBrowserToken, optional=True,
                        limits={"ttl_s": settings.browser_token_max_ttl_s, "limit": settings.max_creates_per_token})
    ttl_s = data.ttl_s or settings.browser_token_ttl_s
    issued_s = now_ms() // 1000
    grant = _grant(data.create, settings.max_creates_per_token)
    token = mint(signing_keys(settings.token_signing_key), account, issued_s, issued_s + ttl_s, grant)
    return json_response({"token": token, "expires_at": iso((issued_s + ttl_s) * 1000), "account_id": account},
                         201)


def _grant(asked: schema.CreateGrantRequest | None, bound: int) -> CreateGrant | None:
    if asked is None:
        return None
    providers = None
    if asked.providers is not None:
        unknown = sorted(set(asked.providers) - PROVIDERS.keys())
        if unknown:
            raise BadRequest(f"create.providers: unknown provider(s) {', '.join(unknown)}; GET /v1/providers "
                             "lists the supported ones", code="unknown_provider")
        providers = frozenset(asked.providers)
    return CreateGrant(asked.limit or min(DEFAULT_CREATE_LIMIT, bound), providers)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/accounts/{account_id}/tokens", create_token)
