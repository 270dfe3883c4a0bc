"""The status API: the product backend's and the browser's view of every connection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

from aiohttp import web
from aiohttp.typedefs import Middleware

from services.status_api import (
    analytics,
    checks,
    held,
    hub,
    notification_endpoints,
    openapi,
    stream,
    tokens,
    ui,
    views,
)
from services.status_api.auth import (
    PRINCIPAL,
    SERVICE,
    Principal,
    header_token,
    query_token,
    query_token_allowed,
    service_token_in_url,
    service_token_matches,
    token_in_url,
)
from services.status_api.config import Settings
from services.status_api.connections import Connections
from services.status_api.limits import StreamQuota
from services.status_api.state import API, ApiState
from shared import http
from shared.broker import ConfirmedPublisher, Topology, amqp_connection
from shared.crypto import warn_if_development_key
from shared.errors import Unauthorized
from shared.held import HeldStore
from shared.models import now_ms
from shared.notify_store import NotifyStore
from shared.redis import SOCKET_TIMEOUT_S, redis_client
from shared.store import Store

BROWSER_KEPT = 4096  # verified browser tokens' principals kept (``BrowserPrincipals``)


def auth_middleware(settings: Settings) -> Middleware:
    """Puts the caller's ``Principal`` on every ``/v1`` request (``auth.py``), or answers 401. The
    service tokens are encoded once; a browser token's principal is kept once verified
    (``BrowserPrincipals``), so a page's next calls skip the verification until the token expires."""
    service_tokens = tuple(candidate.encode() for candidate in settings.status_api_token)
    browser = BrowserPrincipals(settings)

    def principal(request: web.Request) -> Principal:
        token = header_token(request)
        if token is None:
            token = query_token(request)
            if token is None:
                raise Unauthorized("send Authorization: Bearer <token>", code="missing_token")
            if service_token_matches(token, service_tokens):
                raise service_token_in_url()
            if not query_token_allowed(request):
                raise token_in_url()
        elif service_token_matches(token, service_tokens):
            return SERVICE
        if tokens.looks_like_browser_token(token):
            return browser.principal(token, now_ms())
        raise Unauthorized("the token is not valid", code="invalid_token")

    @web.middleware
    async def authenticate(request: web.Request, handler: http.Handler) -> web.StreamResponse:
        if request.path.startswith("/v1/"):
            request[PRINCIPAL] = principal(request)
        return await handler(request)

    return authenticate


class BrowserPrincipals:
    """The principals of browser tokens verified by this process, by token (``BROWSER_KEPT`` at most,
    the oldest dropped first; a token that fails is never kept). One is used again only between the
    moment it was verified and the token's expiry: a page presents the same token on every call, and
    its verification (the claims, the fingerprint, the principal) was a good part of a browser read."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.kept: dict[str, tuple[Principal, int]] = {}  # token -> (its principal, when it was verified)

    def principal(self, token: str, now: int) -> Principal:
        kept = self.kept.get(token)
        if kept is not None:
            principal, verified_at = kept
            assert principal.expires_at_ms is not None
            if verified_at <= now < principal.expires_at_ms:
                return principal
            del self.kept[token]  # expired (or the clock went back): verified again, below
        settings = self.settings
        claims = tokens.verify(tokens.signing_keys(settings.token_signing_key), token, now,
                               settings.browser_token_max_ttl_s, settings.max_creates_per_token)
        principal = Principal("browser", claims.account_id, claims.expires_at_ms, tokens.fingerprint(token),
                              claims.create)
        if len(self.kept) >= BROWSER_KEPT:
            del self.kept[next(iter(self.kept))]
        self.kept[token] = (principal, now)
        return principal


def _state_ctx(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def running(app: web.Application) -> AsyncIterator[None]:
        """Redis, RabbitMQ, the change hub and the analytics publisher: up in order, down in reverse."""
        async with AsyncExitStack() as stack:
            client = await stack.enter_async_context(redis_client(settings.redis_url))
            store = Store(client, settings.redis_prefix, settings.sealer())
            # The status reads (GET, streams) on a pool of their own without per-socket timeouts, one
            # deadline per call instead: the same bound, at a fraction of the CPU (shared/redis.py).
            read_client = await stack.enter_async_context(redis_client(settings.redis_url, socket_timeout=None))
            reads = Store(read_client, settings.redis_prefix, settings.sealer(), deadline_s=SOCKET_TIMEOUT_S)
            warn_if_development_key(settings.uses_dev_secrets_key)
            connection = await stack.enter_async_context(amqp_connection(settings.amqp_addresses, "status_api"))
            channel = await connection.channel()
            topology = Topology(settings.amqp_prefix, settings.analytics_exchange, settings.quorum_members)
            await topology.declare(channel)
            await channel.close()
            publisher = await stack.enter_async_context(analytics.running(connection, settings))
            changes = await stack.enter_async_context(hub.running_hub(store, settings.sse_queue_size))
            app[API] = ApiState(settings=settings, store=store, reads=reads,
                                connections=Connections(store, settings, reads),
                                hub=changes, analytics=publisher, amqp=connection,
                                notify=NotifyStore(client, settings.redis_prefix, settings.sealer()),
                                stream_quota=StreamQuota(settings.max_streams_per_token,
                                                         settings.max_streams_per_account),
                                held=HeldStore(store, settings.held_limits),
                                deliveries=ConfirmedPublisher(connection, topology, settings.publish_timeout_s))
            yield

    return running


async def _ready(app: web.Application) -> dict[str, bool]:
    state = app[API]
    return {"redis": await state.store.ping(), "rabbitmq": not state.amqp.is_closed}


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=64 * 1024, middlewares=[http.error_middleware, auth_middleware(settings)])
    app[http.SERVICE_NAME] = "status_api"
    app[http.READY_CHECK] = lambda: _ready(app)
    app.cleanup_ctx.append(_state_ctx(settings))
    app.on_shutdown.append(stream.close_streams)
    views.add_routes(app)
    tokens.add_routes(app)
    stream.add_routes(app)
    checks.add_routes(app)
    held.add_routes(app)
    notification_endpoints.add_routes(app)
    openapi.add_routes(app)
    ui.add_routes(app)
    http.add_health_routes(app)
    return app
