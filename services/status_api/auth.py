"""Who is asking. Every ``/v1`` call needs ``Authorization: Bearer <token>``.

A service token (``STATUS_API_TOKEN``, several allowed for rotation) may do everything. Tokens are
compared in constant time. The result is a ``Principal`` on the request; views ask it whether a
connection is visible (``can_see``), and answer 404, not 403, for one that is not.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from shared.compare import any_matches
from shared.errors import Unauthorized


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str  # "service" | "browser"
    account_id: str | None = None  # set for browser tokens: the one account they may see
    expires_at_ms: int | None = None  # browser tokens: streams end when the token does

    def can_see(self, account_id: str) -> bool:
        return self.account_id is None or hmac.compare_digest(self.account_id, account_id)


PRINCIPAL = web.RequestKey("principal", Principal)
TokenCheck = Callable[[str], Awaitable[Principal | None]]


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.query.get("token") or None


def service_token_matches(token: str, valid: tuple[str, ...]) -> bool:
    return any_matches(token.encode(), (candidate.encode() for candidate in valid))


def require(request: web.Request) -> Principal:
    principal: Principal | None = request.get(PRINCIPAL)
    if principal is None:
        raise Unauthorized("a bearer token is required", code="unauthorized")
    return principal


def require_service(request: web.Request) -> Principal:
    principal = require(request)
    if principal.kind != "service":
        raise web.HTTPNotFound()  # browser tokens never learn what service-only routes exist
    return principal
