"""The verifier process: the consumer, the timeout sweep, and a small HTTP server for health and
metrics. SIGTERM stops consuming, lets in-flight messages finish, and exits."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from aio_pika.abc import AbstractRobustConnection
from aiohttp import web

from services.verifier.config import Settings
from services.verifier.gauges import QueueDepth, refresh_forever
from services.verifier.sweeper import sweep_forever
from services.verifier.watchdog import QueueProbe, until_stalled
from services.verifier.worker import Consumer, Verifier
from shared import broker, http
from shared.backoff import Backoff
from shared.broker import Topology, amqp_connection
from shared.crypto import warn_if_development_key
from shared.errors import BrokerUnavailable
from shared.redis import RedisClient, has_replicas, is_cluster, is_unreachable, redis_client
from shared.runner import sleep_unless, stop_on_signals
from shared.store import Store

log = logging.getLogger(__name__)
GRACE_S = 4.0
SETUP_TIMEOUT_S = 10.0  # channel, prefetch, topology, consume on a fresh connection
STALL_S = 10.0  # not consuming while messages wait (or the broker not answering) this long: reconnect
CHECK_S = 1.0
PROBE_TIMEOUT_S = 5.0
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0


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
        first = await _connect(settings, verifier, topology, link)  # no broker at start: fail at once
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
        await _consume_until(stop, first, settings, verifier, topology, link)
        verifier.stopping.set()
        await _finish((sweeper, gauges), timeout_s=1.0)
        verifier.summary.flush()
        if runner is not None:
            await runner.cleanup()
    log.info("verifier stopped")


class Link:
    """The connection in use right now (the watchdog replaces it), for the health check and gauges."""

    def __init__(self) -> None:
        self.connection: AbstractRobustConnection | None = None

    def current(self) -> AbstractRobustConnection | None:
        return self.connection

    def usable(self) -> bool:
        return self.connection is not None and not self.connection.is_closed


async def _connect(
    settings: Settings, verifier: Verifier, topology: Topology, link: Link
) -> tuple[AsyncExitStack, Consumer]:
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
    link.connection = conn
    return stack, consumer


async def _consume_until(
    stop: asyncio.Event, first: tuple[AsyncExitStack, Consumer], settings: Settings, verifier: Verifier,
    topology: Topology, link: Link,
) -> None:
    """Consume until ``stop``; whenever the watchdog finds the consumer stalled, drop the connection and
    build a fresh one (with backoff while the broker stays away)."""
    retry = Backoff(RETRY_FIRST_S, RETRY_MAX_S)
    current: tuple[AsyncExitStack, Consumer] | None = first
    while True:
        if current is None:
            await sleep_unless(stop, retry.next_s())
            if stop.is_set():
                return
            try:
                current = await _connect(settings, verifier, topology, link)
            except Exception as exc:
                if not (isinstance(exc, BrokerUnavailable) or broker.is_unreachable(exc)):
                    raise
                log.warning("could not reconnect to the broker", extra={"error": type(exc).__name__})
                continue
            log.info("consuming again on a fresh connection")
        stack, consumer = current
        async with stack:
            if await _stopped_or_stalled(stop, consumer, link, topology):
                log.info("verifier stopping")
                await consumer.stop(GRACE_S)
                return
            log.warning("dropping the broker connection; a fresh one is built")
            link.connection = None
        current = None
        retry.reset()


async def _stopped_or_stalled(stop: asyncio.Event, consumer: Consumer, link: Link, topology: Topology) -> bool:
    """True once ``stop`` is set; False once the watchdog finds ``consumer`` stalled."""
    assert link.connection is not None
    probe = QueueProbe(link.connection, topology, PROBE_TIMEOUT_S)
    stopped = asyncio.create_task(stop.wait())
    stalled = asyncio.create_task(until_stalled(consumer, probe, STALL_S, CHECK_S))
    try:
        await asyncio.wait((stopped, stalled), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stopped, stalled):
            task.cancel()
        await asyncio.gather(stopped, stalled, return_exceptions=True)
        await probe.close()
    return stop.is_set()


async def _finish(tasks: tuple[asyncio.Task[None], ...], timeout_s: float) -> None:
    """Let background loops see ``stopping``; cancel one stuck on a slow Redis (each of their steps is
    a compare-and-set script, so stopping between two loses nothing)."""
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
