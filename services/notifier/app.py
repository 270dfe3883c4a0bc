"""The notifier process: the outbox relay, the two consumers (transition events -> one job per
endpoint; jobs -> one signed POST each, retried through the delay queues), the gauges, and a small HTTP
server for health and metrics. SIGTERM stops consuming, lets in-flight messages finish, and exits.

The consumers have a connection of their own, watched as the verifier's is (``shared/watchdog.py``):
when messages wait and none arrive for 10 s, that connection is dropped and a fresh one built. The
relay's publisher and the gauges use the other connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from aiohttp import web

from services.notifier.config import Settings
from services.notifier.delivery import ATTEMPT_HEADER, ENDPOINT_HEADER, HOLD_FIRST_S, HOLD_MAX_S, Job, Notifier
from services.notifier.outbound import Sender
from services.notifier.publisher import Publisher
from services.notifier.relay import relay_forever
from services.notifier.topology import NotifyTopology
from shared import http, metrics
from shared.addresses import AddressPolicy
from shared.broker import AMQP_ERRORS, amqp_connection
from shared.crypto import warn_if_development_key
from shared.errors import BrokerUnavailable, PoisonMessage, StoreUnavailable
from shared.notify_store import NotifyStore
from shared.redis import redis_client
from shared.runner import stop_on_signals
from shared.watchdog import Link, Session, Watch, consume_until

log = logging.getLogger(__name__)
GRACE_S = 4.0
SETUP_TIMEOUT_S = 10.0  # channel, prefetch, topology, consume on a fresh connection
Handler = Callable[[AbstractIncomingMessage], Awaitable[None]]


def job_of(message: AbstractIncomingMessage) -> Job:
    headers = message.headers or {}
    endpoint_id, attempt = headers.get(ENDPOINT_HEADER), headers.get(ATTEMPT_HEADER)
    if not isinstance(endpoint_id, str) or not isinstance(attempt, int) or not message.message_id:
        raise PoisonMessage("bad_shape", "the job has no endpoint, attempt or event id")
    return Job(message.message_id, endpoint_id, attempt, message.body)


class Consumers:
    """The thin AMQP loop: a handler that returns acks; while Redis or RabbitMQ is away the message is
    held and retried with backoff; a message that can never be handled is rejected to the dead-letter
    queue."""

    def __init__(self, channel: AbstractChannel, stopping: asyncio.Event) -> None:
        self.channel = channel
        self._tags: list[tuple[str, str]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self.stopping = stopping
        self.last_delivery_s = time.monotonic()  # when the broker last handed us a message (the watchdog)

    @property
    def busy(self) -> bool:
        """Some message is being handled (for instance held while Redis is away)."""
        return bool(self._in_flight)

    async def consume(self, queue_name: str, handler: Handler) -> None:
        queue = await self.channel.get_queue(queue_name)

        async def on_message(message: AbstractIncomingMessage) -> None:
            self.last_delivery_s = time.monotonic()
            task = asyncio.current_task()
            if task is not None:
                self._in_flight.add(task)
            try:
                await self._handle(message, handler)
            except AMQP_ERRORS:
                log.warning("could not settle a message; the broker will redeliver it")
            finally:
                if task is not None:
                    self._in_flight.discard(task)

        self._tags.append((queue_name, await queue.consume(on_message)))

    async def _handle(self, message: AbstractIncomingMessage, handler: Handler) -> None:
        delay_s = HOLD_FIRST_S
        while True:
            try:
                await handler(message)
            except PoisonMessage as exc:
                log.warning("notification message dead-lettered", extra={"reason": exc.reason})
                await message.reject(requeue=False)
            except (StoreUnavailable, BrokerUnavailable) as exc:
                # Hold the message and try again (a requeue would count towards the delivery limit and
                # dead-letter it during a long outage); on shutdown it goes back to the queue.
                if self.stopping.is_set():
                    await message.nack(requeue=True)
                    return
                log.warning("notification held: a server is away", extra={"error": type(exc).__name__,
                                                                            "retry_in_s": delay_s})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay_s)
                delay_s = min(delay_s * 2, HOLD_MAX_S)
                continue
            except Exception:
                log.exception("unexpected error handling a notification message")
                await message.nack(requeue=True)  # the queue's delivery limit dead-letters a message that loops
            else:
                await message.ack()
            return

    async def stop(self, grace_s: float) -> None:
        self.stopping.set()
        # Bounded: on a connection that is reconnecting, a cancel would wait for the broker.
        with contextlib.suppress(TimeoutError, *AMQP_ERRORS):
            async with asyncio.timeout(grace_s):
                for queue_name, tag in self._tags:
                    queue = await self.channel.get_queue(queue_name, ensure=False)
                    await queue.cancel(tag)
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=grace_s)
        for task in tuple(self._in_flight):
            task.cancel()


async def refresh_gauges(store: NotifyStore, connection: AbstractRobustConnection, topology: NotifyTopology,
                         interval_s: float, stopping: asyncio.Event) -> None:
    channel: AbstractChannel | None = None
    waiting = (topology.jobs_queue, *map(topology.retry_queue, topology.retry_delays_ms))
    while not stopping.is_set():
        try:
            metrics.NOTIFICATION_ENDPOINTS_DISABLED.set(await store.disabled_count())
            if channel is None or channel.is_closed:
                channel = await connection.channel()
            pending = 0
            for name in waiting:
                queue = await channel.declare_queue(name, passive=True)
                pending += queue.declaration_result.message_count or 0
            metrics.NOTIFICATIONS_PENDING.set(pending)
        except Exception as exc:  # gauges never stop the notifier
            log.warning("notifier gauges not refreshed", extra={"error": type(exc).__name__})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval_s)
    if channel is not None and not channel.is_closed:
        with contextlib.suppress(*AMQP_ERRORS):
            await channel.close()


async def run(settings: Settings, stop: asyncio.Event | None = None, serve_http: bool = True) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is not given)."""
    stop = stop or stop_on_signals()
    topology = NotifyTopology.of(settings)
    policy = AddressPolicy(settings.notifier_allow_private, settings.notifier_allow_loopback)
    async with redis_client(settings.redis_url) as client, amqp_connection(settings.amqp_addresses, "notifier") as conn:
        store = NotifyStore(client, settings.redis_prefix, settings.sealer())
        warn_if_development_key(settings.uses_dev_secrets_key)
        publisher = Publisher(conn, topology, settings.publish_timeout_s)
        sender = Sender(policy, settings.notifier_timeout_s)
        try:
            await _serve(settings, stop, serve_http, conn, topology, Notifier(store, sender, publisher, topology,
                                                                               settings))
        finally:  # on a stop, and on a cancellation too (a killed task's sockets are closed all the same)
            await sender.close()
            await publisher.close()
    log.info("notifier stopped")


def _handlers(notifier: Notifier) -> tuple[Handler, Handler]:
    async def on_event(message: AbstractIncomingMessage) -> None:
        if not message.message_id:
            raise PoisonMessage("bad_shape", "the event has no id")
        await notifier.fan_out(message.message_id, message.body)

    async def on_job(message: AbstractIncomingMessage) -> None:
        await notifier.attempt(job_of(message))

    return on_event, on_job


async def _connect_consumers(settings: Settings, topology: NotifyTopology, notifier: Notifier) -> Session:
    """A fresh connection with both consumers on it; every step bounded, so a hung broker cannot hang us."""
    stack = AsyncExitStack()
    on_event, on_job = _handlers(notifier)
    try:
        conn = await stack.enter_async_context(amqp_connection(settings.amqp_addresses, "notifier-consumers"))
        async with asyncio.timeout(SETUP_TIMEOUT_S):
            channel = await conn.channel()
            await channel.set_qos(prefetch_count=settings.notifier_prefetch)
            await topology.declare(channel)
            consumers = Consumers(channel, notifier.stopping)
            await consumers.consume(topology.events_queue, on_event)
            await consumers.consume(topology.jobs_queue, on_job)
    except BaseException:
        await stack.aclose()
        raise
    return Session(stack, consumers, conn)


async def _serve(settings: Settings, stop: asyncio.Event, serve_http: bool, conn: AbstractRobustConnection,
                 topology: NotifyTopology, notifier: Notifier) -> None:
    store = notifier.store
    first = await _connect_consumers(settings, topology, notifier)  # no broker at start: fail at once
    link = Link()
    link.connection = first.connection
    runner = None
    if serve_http:
        health = http.worker_health_app("notifier", store.ping, lambda: not conn.is_closed and link.usable())
        runner = web.AppRunner(health, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.notifier_host, settings.notifier_port).start()
    stopping = asyncio.Event()
    loops = (
        asyncio.create_task(relay_forever(store, notifier.publisher, topology, settings.notifier_relay_interval_s,
                                          settings.notifier_relay_batch, settings.notifier_relay_lease_s, stopping)),
        asyncio.create_task(refresh_gauges(store, conn, topology, settings.notifier_gauges_interval_s, stopping)),
    )
    log.info("notifier started", extra={"queue": topology.events_queue,
                                        "allow_loopback": settings.notifier_allow_loopback,
                                        "allow_private": settings.notifier_allow_private})
    try:
        await consume_until(stop, first, lambda: _connect_consumers(settings, topology, notifier), link,
                            Watch((topology.events_queue, topology.jobs_queue), GRACE_S))
        log.info("notifier stopping")
        stopping.set()
        await asyncio.wait(loops, timeout=GRACE_S)
    finally:
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        if runner is not None:
            await runner.cleanup()
