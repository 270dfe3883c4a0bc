"""Who is asking. Every ``/v1`` call needs ``Authorization: Bearer <token>``.

A service token (``STATUS_API_TOKEN``, several allowed for rotation) may do everything. Tokens are
compared in constant time. The result is a ``Principal`` on the request; views ask it whether a
connection is visible (``can_see``), and answer 404, not 403, for one that is not.

A token in the URL (``?token=``) ends up in browser history, proxy and access logs. It is accepted
only where there is no other way: a browser token on the two stream routes (``EventSource`` cannot send
headers). A service token in a URL is refused (401 ``service_token_in_url``) even where a browser token
would be accepted, and any token in the URL of another route is 401 ``token_in_url``.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from services.status_api.token_codec import CreateGrant
from shared.compare import any_matches
from shared.errors import ApiError, NotFound, Unauthorized


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str  # "service" | "browser"
    account_id: str | None = None  # set for browser tokens: the one account they may see
    expires_at_ms: int | None = None  # browser tokens: streams end when the token does
    token_id: str | None = None  # browser tokens: a digest of the token (limits count per token)
    create: CreateGrant | None = None  # browser tokens: what the token may create, if anything

    def can_see(self, account_id: str) -> bool:
        return self.account_id is None or hmac.compare_digest(self.account_id, account_id)


SERVICE = Principal("service")  # every request with a service token: one object, immutable
PRINCIPAL = web.RequestKey("principal", Principal)
TokenCheck = Callable[[str], Awaitable[Principal | None]]


# The only routes that take a (browser) token from the query string.
QUERY_TOKEN_ROUTES = frozenset({"/v1/connections/{connection_id}/stream", "/v1/accounts/{account_id}/stream"})


def header_token(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (the scheme in any case), if one is sent."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if token and scheme.lower() == "bearer" else None


def query_token(request: web.Request) -> str | None:
    """The token of ``?token=``, if one is sent (see above for where one is taken)."""
    return request.query.get("token") or None


def query_token_allowed(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical in QUERY_TOKEN_ROUTES


def service_token_in_url() -> Unauthorized:
    return Unauthorized("a service token must never be sent in a URL (it would be logged); send it as "
                        "Authorization: Bearer, and rotate it if it was exposed", code="service_token_in_url")


def token_in_url() -> Unauthorized:
    return Unauthorized("send the token as Authorization: Bearer; only the stream routes take ?token=",
                        code="token_in_url")


def service_token_matches(token: str, valid: tuple[bytes, ...]) -> bool:
    """``token`` is one of the service tokens ``valid`` (encoded once, when the app is made)."""
    return any_matches(token.encode(), valid)


def require(request: web.Request) -> Principal:
    principal: Principal | None = request.get(PRINCIPAL)
    if principal is None:
        raise Unauthorized("a bearer token is required", code="unauthorized")
    return principal


def require_service(request: web.Request) -> Principal:
    principal = require(request)
    if principal.kind != "service":
        # Browser tokens never learn what service-only routes exist: the same 404 as an unknown route.
        raise NotFound("Not Found", code="not_found")
    return principal


def require_service_for(request: web.Request, what: str) -> None:
    """A browser token may use the route, but not for ``what`` (e.g. changing a secret): 403."""
    if require(request).kind != "service":
        raise ApiError(f"{what} needs the service token; a browser token may not do it",
                       code="service_token_required", status=403)
