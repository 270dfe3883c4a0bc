"""Browser tokens: short-lived, stateless, signed, scoped to one account.

Format: ``hsb1.<payload>.<signature>``, both parts unpadded base64url. The payload is JSON
``{"acct": <account id>, "exp": <expiry, ms since the epoch>}``; the signature is HMAC-SHA256 over
``hsb1.<payload>`` with ``TOKEN_SIGNING_KEY`` (the first key signs; every listed key verifies, so keys
can be rotated without logging anybody out). Signatures are compared in constant time, and checked before
anything in the payload is believed: a forged token is ``invalid_token`` even when it also looks expired.

``POST /v1/accounts/{account_id}/tokens`` (service token only) mints one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

import orjson
from aiohttp import web

from services.status_api import schema
from services.status_api import validation as v
from services.status_api.auth import require_service
from services.status_api.views import CONNECTIONS
from shared.compare import any_matches
from shared.errors import Unauthorized
from shared.http import json_response
from shared.models import iso, now_ms

PREFIX = "hsb1"


@dataclass(frozen=True, slots=True)
class BrowserClaims:
    account_id: str
    expires_at_ms: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise _invalid() from exc


def _sign(key: str, signed: str) -> bytes:
    return hmac.new(key.encode(), signed.encode(), hashlib.sha256).digest()


def _invalid() -> Unauthorized:
    return Unauthorized("the token is not valid", code="invalid_token")


def looks_like_browser_token(token: str) -> bool:
    return token.startswith(PREFIX + ".")


def mint(keys: tuple[str, ...], account_id: str, expires_at_ms: int) -> str:
    payload = _b64(orjson.dumps({"acct": account_id, "exp": expires_at_ms}))
    signed = f"{PREFIX}.{payload}"
    return f"{signed}.{_b64(_sign(keys[0], signed))}"


def verify(keys: tuple[str, ...], token: str, now: int) -> BrowserClaims:
    """The claims of a valid token; ``invalid_token`` or ``token_expired`` (both 401) otherwise."""
    prefix, _, rest = token.partition(".")
    payload, _, signature = rest.partition(".")
    if prefix != PREFIX or not payload or not signature:
        raise _invalid()
    given = _unb64(signature)
    if not any_matches(given, (_sign(key, f"{PREFIX}.{payload}") for key in keys)):
        raise _invalid()
    claims = _claims(_unb64(payload))
    if claims.expires_at_ms <= now:
        raise Unauthorized("the browser token has expired; ask the product for a new one",
                           code="token_expired")
    return claims


def _claims(raw: bytes) -> BrowserClaims:
    try:
        data = orjson.loads(raw)
        return BrowserClaims(str(data["acct"]), int(data["exp"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise _invalid() from exc


# --- the route ----------------------------------------------------------------------------------

async def create_token(request: web.Request) -> web.Response:
    require_service(request)
    account = v.account_id(request.match_info["account_id"])
    settings = request.app[CONNECTIONS].settings
    data = await v.body(request, schema.NewBrowserToken, optional=True,
                        limits={"ttl_s": settings.browser_token_max_ttl_s})
    ttl_s = data.ttl_s or settings.browser_token_ttl_s
    expires = now_ms() + ttl_s * 1000
    token = mint(settings.token_signing_key, account, expires)
    return json_response({"token": token, "expires_at": iso(expires), "account_id": account}, 201)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/accounts/{account_id}/tokens", create_token)
