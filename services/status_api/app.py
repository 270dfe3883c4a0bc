"""The status API: the product backend's and the browser's view of every connection."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aio_pika.abc import AbstractRobustConnection
from aiohttp import web

from services.status_api import analytics, checks, notification_endpoints, openapi, stream, tokens, ui, views
from services.status_api.auth import (
    PRINCIPAL,
    Principal,
    bearer_token,
    query_token_allowed,
    service_token_in_url,
    service_token_matches,
    token_in_url,
)
from services.status_api.config import Settings
from services.status_api.connections import Connections
from services.status_api.limits import STREAM_QUOTA, StreamQuota
from shared import http
from shared.broker import Topology, amqp_connection
from shared.errors import Unauthorized
from shared.models import now_ms
from shared.notify_store import NotifyStore
from shared.redis import redis_client
from shared.store import Store

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
AMQP = web.AppKey("amqp", AbstractRobustConnection)


@web.middleware
async def auth_middleware(request: web.Request, handler: http.Handler) -> web.StreamResponse:
    if request.path.startswith("/v1/"):
        request[PRINCIPAL] = _principal(request)
    return await handler(request)


def _principal(request: web.Request) -> Principal:
    presented = bearer_token(request)
    if presented is None:
        raise Unauthorized("send Authorization: Bearer <token>", code="missing_token")
    token, settings = presented.value, request.app[SETTINGS]
    if service_token_matches(token, settings.status_api_token):
        if presented.in_url:
            raise service_token_in_url()
        return Principal("service")
    if presented.in_url and not query_token_allowed(request):
        raise token_in_url()
    if tokens.looks_like_browser_token(token):
        keys = tokens.signing_keys(settings.token_signing_key)
        claims = tokens.verify(keys, token, now_ms(), settings.browser_token_max_ttl_s)
        return Principal("browser", claims.account_id, claims.expires_at_ms, tokens.fingerprint(token))
    raise Unauthorized("the token is not valid", code="invalid_token")


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with redis_client(settings.redis_url) as client:
        app[STORE] = store = Store(client, settings.redis_prefix)
        app[notification_endpoints.NOTIFY] = NotifyStore(client, settings.redis_prefix)
        app[views.CONNECTIONS] = Connections(store, settings)
        yield


async def _amqp_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with amqp_connection(settings.amqp_url, "status_api") as connection:
        channel = await connection.channel()
        await Topology(settings.amqp_prefix, settings.analytics_exchange).declare(channel)
        await channel.close()
        app[AMQP] = connection
        async with analytics.running(connection, settings) as publisher:
            app[analytics.ANALYTICS] = publisher
            yield


async def _ready(app: web.Application) -> dict[str, bool]:
    return {"redis": await app[STORE].ping(), "rabbitmq": not app[AMQP].is_closed}


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=64 * 1024, middlewares=[http.error_middleware, auth_middleware])
    app[SETTINGS] = settings
    app[notification_endpoints.ADDRESS_POLICY] = settings.notify_address_policy
    app[STREAM_QUOTA] = StreamQuota(settings.max_streams_per_token, settings.max_streams_per_account)
    app[http.SERVICE_NAME] = "status_api"
    app[http.READY_CHECK] = lambda: _ready(app)
    app.cleanup_ctx.extend([_redis_ctx, _amqp_ctx, stream.hub_ctx])
    app.on_shutdown.append(stream.close_streams)
    views.add_routes(app)
    tokens.add_routes(app)
    stream.add_routes(app)
    checks.add_routes(app)
    notification_endpoints.add_routes(app)
    openapi.add_routes(app)
    ui.add_routes(app)
    http.add_health_routes(app)
    return app
