"""The verifier process: the consumer, the timeout sweep, and a small HTTP server for health and
metrics. SIGTERM stops consuming, lets in-flight messages finish, and exits."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from aiohttp import web

from services.verifier.config import Settings
from services.verifier.gauges import QueueDepth, refresh_forever
from services.verifier.sweeper import sweep_forever
from services.verifier.worker import Consumer, Verifier
from shared import http
from shared.broker import Topology, amqp_connection
from shared.crypto import warn_if_development_key
from shared.redis import RedisClient, has_replicas, is_cluster, is_unreachable, redis_client
from shared.runner import stop_on_signals
from shared.store import Store
from shared.watchdog import Link, Session, Watch, consume_until

log = logging.getLogger(__name__)
GRACE_S = 4.0
SETUP_TIMEOUT_S = 10.0  # channel, prefetch, topology, consume on a fresh connection


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
    stop = stop or stop_on_signals()
    topology = Topology(settings.amqp_prefix, settings.analytics_exchange, settings.quorum_members)
    async with redis_client(settings.redis_url) as client:
        store = Store(client, settings.redis_prefix, settings.sealer(),
                      wait_replicas=await wait_replicas(settings, client),
                      wait_timeout_ms=settings.redis_wait_timeout_ms, rhythm=settings.rhythm())
        warn_if_development_key(settings.uses_dev_secrets_key)
        verifier = Verifier(store, retry_max_s=settings.store_retry_max_s,
                            log_each_delivery=settings.log_each_delivery)
        link = Link()
        first = await _connect(settings, verifier, topology)  # no broker at start: fail at once
        link.connection = first.connection
        runner = None
        if serve_http:
            runner = web.AppRunner(http.worker_health_app("verifier", store.ping, link.usable), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, settings.verifier_host, settings.verifier_port).start()
        sweeper = asyncio.create_task(
            sweep_forever(store, settings.sweep_interval_s, settings.sweep_batch, verifier.stopping)
        )
        gauges = asyncio.create_task(
            refresh_forever(store, QueueDepth(link.current, topology), settings.gauges_interval_s,
                            verifier.stopping)
        )
        log.info("verifier started", extra={"queue": topology.queue})
        await consume_until(stop, first, lambda: _connect(settings, verifier, topology), link,
                            Watch((topology.queue,), GRACE_S))
        log.info("verifier stopping")
        verifier.stopping.set()
        await _finish((sweeper, gauges), timeout_s=1.0)
        verifier.summary.flush()
        if runner is not None:
            await runner.cleanup()
    log.info("verifier stopped")


async def _connect(settings: Settings, verifier: Verifier, topology: Topology) -> Session:
    """A fresh connection with a consumer on it; every step bounded, so a hung broker cannot hang us."""
    stack = AsyncExitStack()
    try:
        conn = await stack.enter_async_context(amqp_connection(settings.amqp_addresses, "verifier"))
        async with asyncio.timeout(SETUP_TIMEOUT_S):
            channel = await conn.channel(publisher_confirms=True)
            consumer = Consumer(verifier, channel, topology)
            await consumer.start(settings.prefetch)
    except BaseException:
        await stack.aclose()
        raise
    return Session(stack, consumer, conn)


async def _finish(tasks: tuple[asyncio.Task[None], ...], timeout_s: float) -> None:
    """Let background loops see ``stopping``; cancel one stuck on a slow Redis (each of their steps is
    a compare-and-set script, so stopping between two loses nothing)."""
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
