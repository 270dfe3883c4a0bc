"""The receiver: ``POST /hooks/{connection_id}`` (and ``GET`` for handshakes).

It verifies the request with the connection's provider scheme, publishes one delivery message per
request it can attribute to a connection (verified or not; never a body) and answers 202 only once
RabbitMQ has confirmed that message. No confirm in time: 503 with ``Retry-After``, so the provider
retries and nothing it was told is accepted is ever lost.

The provider-facing port serves ``/hooks/…``, ``/healthz`` and a bare ``/readyz`` (200 "ready" or 503
"not ready", nothing more: load balancers need it). ``/metrics`` and the detailed ``/readyz`` are on
the admin listener (``create_admin_app``, ``RECEIVER_ADMIN_HOST``/``RECEIVER_ADMIN_PORT``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from services.receiver.config import Settings
from services.receiver.limits import RejectLimit, RejectLimiter, read_body
from services.receiver.lookup import ConnectionTarget, TargetCache
from services.receiver.shedding import Admission
from shared import http, metrics
from shared.broker import ConfirmedPublisher, Topology, amqp_connection
from shared.crypto import warn_if_development_key
from shared.errors import (
    ApiError,
    BrokerUnavailable,
    Gone,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    StoreUnavailable,
    TooManyRequests,
    VerificationError,
)
from shared.held import HeldStore, held_request
from shared.logs import Summary
from shared.models import DeliveryMessage, bounded_event_id, new_id, now_ms
from shared.providers import PROVIDERS, InboundRequest, Provider, Verified
from shared.providers.core import SIGNATURE_MISMATCH, secret_already_learnt
from shared.providers.diagnosis import Sibling, other_connection
from shared.providers.rotation import verify_with_rotation
from shared.redis import redis_client
from shared.store import Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Parts:
    """What handling a webhook uses, in one object: a request looks it up once (``request.app[PARTS]``)
    and reads attributes, instead of a chain of app look-ups for each part. The Redis and AMQP parts
    are set by the app's cleanup contexts, when the connections are up."""

    settings: Settings
    summary: Summary
    store: Store = field(init=False)
    limiter: RejectLimiter = field(init=False)
    handshakes: RejectLimiter = field(init=False)
    held: HeldStore = field(init=False)
    targets: TargetCache = field(init=False)
    publisher: ConfirmedPublisher = field(init=False)
    admission: Admission = field(init=False)


PARTS = web.AppKey("receiver_parts", Parts)
CONNECTION_ID = re.compile(r"^[0-9a-f]{32}$")
RETRY_AFTER_S = 5


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    r = app[PARTS]
    settings = r.settings
    async with redis_client(settings.redis_url) as client:
        r.store = store = Store(client, settings.redis_prefix, settings.sealer())
        warn_if_development_key(settings.uses_dev_secrets_key)
        r.limiter = RejectLimiter(store, RejectLimit(settings.rejected_burst, settings.rejected_per_s))
        r.handshakes = RejectLimiter(
            store, RejectLimit(settings.handshake_burst, settings.handshake_per_s, "HANDSHAKE"),
            key=store.keys.handshake_bucket,
        )
        r.held = HeldStore(store, settings.held_limits)
        r.targets = cache = TargetCache(store, settings.target_cache_ttl_s, settings.target_cache_size)
        task = asyncio.create_task(cache.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _amqp_ctx(app: web.Application) -> AsyncIterator[None]:
    r = app[PARTS]
    settings = r.settings
    topology = Topology(settings.amqp_prefix, settings.analytics_exchange, settings.quorum_members)
    async with amqp_connection(settings.amqp_addresses, "receiver") as connection:
        r.publisher = publisher = ConfirmedPublisher(connection, topology, settings.publish_timeout_s)
        r.admission = admission = Admission(publisher, settings.shed_in_flight, settings.shed_confirm_wait_s,
                                               Summary(log, "webhooks shed", level=logging.WARNING))
        metrics.WEBHOOKS_IN_FLIGHT.set_function(lambda: admission.in_flight)
        yield
        admission.summary.flush()


def _request_for(request: web.Request, target: ConnectionTarget, body: bytes) -> InboundRequest:
    url = target.webhook_url + (f"?{request.query_string}" if request.query_string else "")
    return InboundRequest(request.method, url, request.headers, request.query, body)


async def _publish(r: Parts, msg: DeliveryMessage, testing: bool = False) -> None:
    """Publish and wait for the confirm; ``testing`` (a test window is open): then record the
    delivery's receiver hops, the confirm time included, which the message itself cannot carry."""
    started = time.perf_counter()
    try:
        await r.publisher.publish(msg.to_bytes(), message_id=msg.delivery_id)
    except BrokerUnavailable:
        metrics.PUBLISH_FAILURES.inc()
        raise
    metrics.PUBLISH_CONFIRM.observe(time.perf_counter() - started)
    if testing:
        await _record_hops(r, msg, now_ms())


async def _record_hops(r: Parts, msg: DeliveryMessage, queued_at: int) -> None:
    """A test window's received, checked and queued hops, live (the verifier records the rest). Only
    while a window is open: no Redis call for ordinary webhooks. Best effort: the delivery is confirmed
    and its answer stands whatever happens here."""
    hops = {"received": msg.received_at_ms, "checked": msg.checked_at_ms or msg.received_at_ms, "queued": queued_at}
    try:
        await r.store.record_test_hops(msg.connection_id, "", msg.delivery_id, msg.outcome, msg.reason, hops)
    except StoreUnavailable:
        log.warning("could not record a test's hops", extra={"delivery_id": msg.delivery_id})


def _message(target: ConnectionTarget, delivery_id: str, at: int, **fields: object) -> DeliveryMessage:
    return DeliveryMessage(
        delivery_id=delivery_id,
        connection_id=target.connection_id,
        provider=target.provider,
        received_at_ms=at,
        checked_at_ms=now_ms(),
        **fields,  # type: ignore[arg-type]
    )


def _verified_message(target: ConnectionTarget, delivery_id: str, at: int, v: Verified) -> DeliveryMessage:
    """A verified delivery; a handshake that proves nothing about the secret is only ``reachable``."""
    return _message(
        target,
        delivery_id,
        at,
        outcome="reachable" if v.reachable_only else "verified",
        event_id=bounded_event_id(v.event_id),
        fingerprint=v.fingerprint,
        event_type=v.event_type,
        is_test=v.is_test,
        handshake=v.handshake,
        secret_slot=v.secret_slot,
    )


def _unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("The delivery could not be stored right now; retry later.",
                              code="broker_unavailable", retry_after_s=RETRY_AFTER_S)


def _check(
    provider: Provider, inbound: InboundRequest, target: ConnectionTarget, at: int, diagnosis: bool = True
) -> Verified:
    return verify_with_rotation(
        provider, inbound, target.secrets(), target.settings, at / 1000, retired=target.retired_secret,
        diagnosis=diagnosis,
    )


async def _verify(
    r: Parts, provider: Provider, inbound: InboundRequest, target: ConnectionTarget, cached: bool,
    at: int, over_budget: bool = False,
) -> Verified:
    """Verify; a mismatch against a *cached* secret is checked once more against a fresh read (the
    secret may have changed without a change the cache evicts on: see ``lookup``). Over the rejected
    budget: the signature check only (bounded: ``core.MAX_SIGNATURES``), no diagnosis, no fresh read."""
    try:
        return _check(provider, inbound, target, at, diagnosis=not over_budget)
    except VerificationError as exc:
        if not cached or exc.code != SIGNATURE_MISMATCH or over_budget:
            raise
        fresh = await r.targets.reload(target.connection_id, at)
        if fresh is None or fresh.secrets() == target.secrets():
            raise
    return _check(provider, inbound, fresh, at)


async def _rejected(
    r: Parts, target: ConnectionTarget, delivery_id: str, at: int, exc: VerificationError | ApiError,
    checked: tuple[Provider, InboundRequest] | None = None,
) -> ApiError:
    """Record a rejected delivery in its connection's deliveries (within the connection's budget, else
    429) and return the error to answer with, carrying the delivery id. A request whose signature was
    ``checked`` is diagnosed further (another connection's secret) and held, within the budget only."""
    metrics.child(metrics.WEBHOOKS, target.provider, exc.code).inc()
    wait_s = await r.limiter.retry_after_s(target.connection_id, at)
    if wait_s is not None:  # a flood of bad deliveries: record no more of them for now
        return _too_many_rejected(wait_s)
    other: str | None = None
    if checked is not None and isinstance(exc, VerificationError) and exc.code == SIGNATURE_MISMATCH:
        found = await _other_connection(r, target, *checked, at)
        if found is not None:
            exc, other = found, str(found.detail["connection_id"])
    msg = _message(target, delivery_id, at, outcome="rejected", reason=exc.code, message=exc.message,
                   other_connection_id=other)
    try:
        await _publish(r, msg, target.testing)
    except BrokerUnavailable:
        return _unavailable()
    log.info("webhook rejected", extra={"delivery_id": delivery_id, "provider": target.provider,
                                         "reason": exc.code})
    if checked is not None:
        await _hold(r, target, delivery_id, at, exc.code, checked[1], other)
    if other is not None:  # the sender is not told which connection its secret belongs to
        return ApiError(OTHER_CONNECTION_WORDS, code=exc.code, status=exc.status, delivery_id=delivery_id)
    detail = exc.detail if isinstance(exc, ApiError) else {}  # a verification's detail stays in the logs
    return ApiError(exc.message, code=exc.code, status=exc.status, delivery_id=delivery_id, **detail)


OTHER_CONNECTION_WORDS = "The request is signed with the signing secret of another connection of this account."
# Requests never held: a handshake is answered at once or not at all; without a body nothing can verify.
NOT_HELD_METHODS = frozenset({"GET", "HEAD"})


async def _other_connection(
    r: Parts, target: ConnectionTarget, provider: Provider, inbound: InboundRequest, at: int
) -> VerificationError | None:
    """After a signature mismatch: does a sibling's secret (same account, same provider; at most
    ``OTHER_SECRET_CANDIDATES`` of them) sign it? Never fails the answer: Redis away, no diagnosis."""
    limit = r.settings.other_secret_candidates
    if limit < 1 or inbound.method in NOT_HELD_METHODS:
        return None
    try:
        found = await r.store.siblings(target.connection_id, limit)
    except StoreUnavailable:
        return None
    siblings = [Sibling(other, stored.secret, stored.settings) for other, stored in found]
    return other_connection(provider, inbound, siblings, at / 1000)


async def _hold(
    r: Parts, target: ConnectionTarget, delivery_id: str, at: int, reason: str,
    inbound: InboundRequest, other: str | None,
) -> None:
    """Keep the rejected request, sealed, to verify it again after a fix (``shared/held.py``). The
    answer does not wait on it failing: the delivery is already recorded."""
    if inbound.method in NOT_HELD_METHODS:
        return
    query = inbound.url.partition("?")[2]
    request = held_request(delivery_id, at, reason, inbound.method, query, inbound.headers, inbound.body)
    try:
        await r.held.hold(target.connection_id, request, other)
    except StoreUnavailable:
        log.warning("a rejected delivery could not be held", extra={"delivery_id": delivery_id})
    except Exception as exc:  # noqa: BLE001 - the rejection is recorded: its 401 stands, never a 500
        # The error's type only: its text could quote the request.
        log.error("a rejected delivery could not be held", extra={"delivery_id": delivery_id,
                                                                   "error": type(exc).__name__})


async def _learn(
    r: Parts, provider: Provider, target: ConnectionTarget, offered: str, at: int
) -> VerificationError | None:
    """Store a secret a handshake offers, once (compare-and-set on the placeholder, in one script): of
    two racing handshakes exactly one wins. The secret never goes into a delivery message."""
    placeholder = provider.secret_placeholder
    if not placeholder:
        return secret_already_learnt()
    outcome = await r.store.learn_secret(target.connection_id, offered, placeholder, at)
    if outcome in ("learnt", "same"):
        return None
    if outcome == "taken":
        return secret_already_learnt()
    # Disconnected (or removed) while the handshake was on its way.
    return VerificationError("connection_disconnected", "This connection was disconnected.", status=410)


def _too_many_rejected(wait_s: int) -> TooManyRequests:
    return TooManyRequests("Too many deliveries to this connection failed verification; retry later.",
                           code="too_many_rejected", retry_after_s=wait_s)


async def _target(r: Parts, request: web.Request, cid: str, at: int) -> tuple[ConnectionTarget, Provider, bool]:
    """The connection the URL names, its provider, and whether it came from the cache; else 404/405/410.
    A cached one is found without awaiting anything (most webhooks); otherwise Redis is read."""
    target = r.targets.cached(cid, at)
    cached = target is not None
    if target is None:
        if not CONNECTION_ID.match(cid):
            raise _unknown()
        target, cached = await r.targets.get(cid, at)
        if target is None:
            raise _unknown()
    if target.state == "disconnected":
        raise Gone("This connection was disconnected.", code="connection_disconnected")
    provider = PROVIDERS.get(target.provider)
    if provider is None:  # a provider removed from the code while connections still name it
        raise Gone("This connection's provider is not supported.", code="provider_unsupported")
    if request.method not in provider.methods:
        raise ApiError(f"{target.provider} webhooks use POST.", code="method_not_allowed", status=405)
    return target, provider, cached


def _unknown() -> NotFound:
    return NotFound("No connection has this id.", code="unknown_connection")


async def receive(request: web.Request) -> web.StreamResponse:
    r = request.app[PARTS]
    admission = r.admission
    admission.check()  # past the load-shedding bounds: 503 overloaded, before anything is read
    admitted = False
    try:
        at = now_ms()
        target, provider, cached = await _target(r, request, request.match_info["connection_id"], at)
        settings = r.settings
        delivery_id = new_id()
        # A connection already over its rejected budget: a request that fails is answered 429 at once.
        # The signature is still checked (bounded), so the real provider is never crowded out.
        wait_s = r.limiter.over_budget_s(target.connection_id, at)
        try:
            body = await read_body(request, settings.body_read_timeout_s, settings.max_body_bytes)
            # Counted in flight from here (the bounds checked again): a slow sender's wait is not our load.
            admission.admit()
            admitted = True
            inbound = _request_for(request, target, body)
            verified = await _verify(r, provider, inbound, target, cached, at, wait_s is not None)
        except (VerificationError, PayloadTooLarge) as exc:
            if wait_s is not None:
                metrics.child(metrics.WEBHOOKS, target.provider, exc.code).inc()
                raise _too_many_rejected(wait_s) from exc
            checked = (provider, inbound) if isinstance(exc, VerificationError) else None
            raise await _rejected(r, target, delivery_id, at, exc, checked) from exc
        return await _accepted(r, provider, target, delivery_id, at, verified)
    finally:
        if admitted:
            admission.leave()


async def _accepted(
    r: Parts, provider: Provider, target: ConnectionTarget, delivery_id: str, at: int, verified: Verified
) -> web.Response:
    """A request that verified: within the handshake budget, its offered secret stored (once), published."""
    if verified.handshake:
        wait_s = await r.handshakes.retry_after_s(target.connection_id, at)
        if wait_s is not None:  # anyone can trigger an echo: answer (and record) only so many
            raise TooManyRequests("Too many handshakes to this connection; retry later.",
                                  code="too_many_handshakes", retry_after_s=wait_s)
    if verified.learnt_secret is not None:
        refused = await _learn(r, provider, target, verified.learnt_secret, at)
        if refused is not None:
            raise await _rejected(r, target, delivery_id, at, refused)
    outcome = "reachable" if verified.reachable_only else "verified"
    metrics.child(metrics.WEBHOOKS, target.provider, outcome).inc()
    try:
        await _publish(r, _verified_message(target, delivery_id, at, verified), target.testing)
    except BrokerUnavailable as exc:
        raise _unavailable() from exc
    if r.settings.log_each_delivery:
        log.info("webhook accepted", extra={"delivery_id": delivery_id, "provider": target.provider})
    else:  # one line a second for all of them (a rejection is always logged on its own)
        r.summary.count(target.provider, outcome)
    if verified.reply is not None:
        reply = verified.reply
        return web.Response(
            status=reply.status, body=reply.body, content_type=reply.content_type, headers=dict(reply.headers)
        )
    return http.json_response({"status": "accepted", "delivery_id": delivery_id}, 202)


async def _ready(r: Parts) -> dict[str, bool]:
    publisher_ok = await r.publisher.ready()
    return {"redis": await r.store.ping(), "rabbitmq": publisher_ok}


async def ready_bare(request: web.Request) -> web.Response:
    """Readiness for whatever sits in front of the public port: a word, no dependency detail."""
    ok = all((await request.app[http.READY_CHECK]()).values())
    return web.Response(text="ready" if ok else "not ready", status=200 if ok else 503)


async def _flush_summaries(app: web.Application) -> None:
    app[PARTS].summary.flush()


def create_app(settings: Settings) -> web.Application:
    """The provider-facing app: webhooks, /healthz and the bare /readyz (no /metrics)."""
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[http.error_middleware])
    app[PARTS] = parts = Parts(settings, Summary(log, "webhooks accepted"))
    app[http.SERVICE_NAME] = "receiver"
    app[http.READY_CHECK] = lambda: _ready(parts)
    app.cleanup_ctx.extend([_redis_ctx, _amqp_ctx])
    app.on_cleanup.append(_flush_summaries)
    app.router.add_route("POST", "/hooks/{connection_id}", receive)
    app.router.add_route("GET", "/hooks/{connection_id}", receive)
    app.router.add_route("HEAD", "/hooks/{connection_id}", receive)  # Trello checks a new webhook with HEAD
    app.router.add_get("/healthz", http.healthz)
    app.router.add_get("/readyz", ready_bare)
    return app


def create_admin_app(public: web.Application) -> web.Application:
    """The admin listener's app: /healthz, the detailed /readyz and /metrics, for ``public``'s process."""
    admin = web.Application(middlewares=[http.error_middleware])
    admin[http.SERVICE_NAME] = "receiver"
    admin[http.READY_CHECK] = lambda: _ready(public[PARTS])
    http.add_health_routes(admin)
    return admin


def with_admin_listener(app: web.Application, host: str, port: int, reuse_port: bool = False) -> web.Application:
    """Serve ``create_admin_app(app)`` on ``host:port`` for as long as ``app`` runs."""
    runner = web.AppRunner(create_admin_app(app), access_log=None)

    async def start(_: web.Application) -> None:
        await runner.setup()
        await web.TCPSite(runner, host, port, reuse_port=reuse_port).start()

    async def stop(_: web.Application) -> None:
        await runner.cleanup()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    return app
