"""aiohttp pieces every HTTP service uses: JSON responses, the error middleware, health routes."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from shared import metrics
from shared.crypto import SecretUnreadable
from shared.errors import ApiError, BrokerUnavailable, StoreUnavailable

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ReadyCheck = Callable[[], Awaitable[dict[str, bool]]]
SERVICE_NAME = web.AppKey("service_name", str)
READY_CHECK: web.AppKey[ReadyCheck] = web.AppKey("ready_check")
RETRY_AFTER_S = "5"  # how soon to retry when Redis or RabbitMQ is away


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def json_body_response(body: bytes, status: int = 200) -> web.Response:
    """``json_response`` of a value already serialised (``body``: its ``orjson.dumps``)."""
    return web.Response(body=body, status=status, content_type="application/json")


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    """The one error body. Handlers raise ``ApiError``; only the middleware calls this."""
    return json_response({"error": {"code": code, "message": message, **extra}}, status, headers)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes ``{"error": {"code", "message"}}``; no traceback ever reaches a client."""
    service = request.app[SERVICE_NAME]
    started = time.perf_counter()
    try:
        response = await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.code, exc.message, exc.headers, **exc.detail)
    except StoreUnavailable:
        response = error_response(503, "store_unavailable", "Redis is not reachable; retry shortly.",
                                  {"Retry-After": RETRY_AFTER_S})
    except BrokerUnavailable:
        response = error_response(503, "broker_unavailable", "RabbitMQ is not reachable; retry shortly.",
                                  {"Retry-After": RETRY_AFTER_S})
    except SecretUnreadable:  # SECRETS_KEYS lost a key still in use: an operator's fix, not the client's
        log.error("secret unreadable", extra={"route": _route_name(request)})
        response = error_response(503, "secret_unreadable",
                                  "A stored secret cannot be decrypted with the configured keys; retry after the "
                                  "operator restores the key.", {"Retry-After": RETRY_AFTER_S})
    except web.HTTPException as exc:  # aiohttp's own: no route, a method not allowed, a redirect
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        response = error_response(exc.status, code, exc.reason, allow)
    except Exception:
        log.exception("unhandled error", extra={"route": _route_name(request)})
        response = error_response(500, "internal_error", "Something went wrong on our side.")
    route = _route_name(request)
    metrics.child(metrics.HTTP_REQUESTS, service, route, request.method, str(response.status)).inc()
    metrics.child(metrics.HTTP_DURATION, service, route).observe(time.perf_counter() - started)
    return response


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = await request.app[READY_CHECK]()
    ok = all(checks.values())
    return json_response({"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503)


async def metrics_view(request: web.Request) -> web.Response:
    body, content_type = metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


def add_health_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)


def worker_health_app(service: str, redis_ok: Callable[[], Awaitable[bool]], amqp_ok: Callable[[], bool]
                      ) -> web.Application:
    """The health port of a consuming service (verifier, notifier): ready while it reaches Redis and
    RabbitMQ."""
    app = web.Application(middlewares=[error_middleware])
    app[SERVICE_NAME] = service

    async def ready() -> dict[str, bool]:
        return {"redis": await redis_ok(), "rabbitmq": amqp_ok()}

    app[READY_CHECK] = ready
    add_health_routes(app)
    return app
