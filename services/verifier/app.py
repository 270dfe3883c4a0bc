"""The verifier process: the consumer, the timeout sweep, and a small HTTP server for health and
metrics. SIGTERM stops consuming, lets in-flight messages finish, and exits."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from aiohttp import web

from services.verifier.config import Settings
from services.verifier.gauges import QueueDepth, refresh_forever
from services.verifier.sweeper import sweep_forever
from services.verifier.worker import Consumer, Verifier
from shared import http
from shared.broker import Topology, amqp_connection
from shared.crypto import warn_if_development_key
from shared.redis import RedisClient, has_replicas, is_cluster, is_unreachable, redis_client
from shared.store import Store

log = logging.getLogger(__name__)
GRACE_S = 4.0


def health_app(store: Store, amqp_ok: Callable[[], bool]) -> web.Application:
    app = web.Application(middlewares=[http.error_middleware])
    app[http.SERVICE_NAME] = "verifier"

    async def ready() -> dict[str, bool]:
        return {"redis": await store.ping(), "rabbitmq": amqp_ok()}

    app[http.READY_CHECK] = ready
    http.add_health_routes(app)
    return app


async def wait_replicas(settings: Settings, client: RedisClient) -> int:
    """``REDIS_WAIT_REPLICAS``; when -1 (auto): 1 on a Redis Cluster whose every primary has a replica
    (or that cannot be asked yet: a production cluster has replicas), else 0."""
    if settings.redis_wait_replicas >= 0:
        return settings.redis_wait_replicas
    if not is_cluster(client):
        return 0
    try:
        return 1 if await has_replicas(client) else 0
    except Exception as exc:
        if not is_unreachable(exc):
            raise
        return 1


async def run(settings: Settings, stop: asyncio.Event | None = None, serve_http: bool = True) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is not given)."""
    stop = stop or _signal_event()
    topology = Topology(settings.amqp_prefix, settings.analytics_exchange, settings.quorum_members)
    async with redis_client(settings.redis_url) as client, amqp_connection(settings.amqp_addresses, "verifier") as conn:
        store = Store(client, settings.redis_prefix, settings.sealer(),
                      wait_replicas=await wait_replicas(settings, client),
                      wait_timeout_ms=settings.redis_wait_timeout_ms)
        warn_if_development_key(settings.uses_dev_secrets_key)
        verifier = Verifier(store, retry_max_s=settings.store_retry_max_s)
        channel = await conn.channel(publisher_confirms=True)
        consumer = Consumer(verifier, channel, topology)
        await consumer.start(settings.prefetch)
        runner = None
        if serve_http:
            runner = web.AppRunner(health_app(store, lambda: not conn.is_closed), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, settings.verifier_host, settings.verifier_port).start()
        sweeper = asyncio.create_task(
            sweep_forever(store, settings.sweep_interval_s, settings.sweep_batch, verifier.stopping)
        )
        gauges = asyncio.create_task(
            refresh_forever(store, QueueDepth(conn, topology), settings.gauges_interval_s, verifier.stopping)
        )
        log.info("verifier started", extra={"queue": topology.queue})
        await stop.wait()
        log.info("verifier stopping")
        await consumer.stop(GRACE_S)
        verifier.stopping.set()
        await _finish((sweeper, gauges), timeout_s=1.0)
        if runner is not None:
            await runner.cleanup()
    log.info("verifier stopped")


async def _finish(tasks: tuple[asyncio.Task[None], ...], timeout_s: float) -> None:
    """Let background loops see ``stopping``; cancel one stuck on a slow Redis (each of their steps is
    a compare-and-set script, so stopping between two loses nothing)."""
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _signal_event() -> asyncio.Event:
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, event.set)
    return event
