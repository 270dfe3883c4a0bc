"""RabbitMQ access: the topology, the confirmed publisher, and the analytics publisher.

Topology (``P`` = ``AMQP_PREFIX``):

    P.deliveries (direct exchange) --delivery--> P.deliveries (quorum queue, durable)
                                                    | rejected / over x-delivery-limit
                                                    v
    P.dead (fanout exchange) ------------------> P.deliveries.dead (quorum queue)
    analytics (topic exchange; routing key = event name)

aio-pika and aiormq errors leave this module as ``BrokerUnavailable``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from pamqp.commands import Basic

from shared.errors import BrokerUnavailable

ROUTING_KEY = "delivery"
DELIVERY_LIMIT = 20  # a message returned this often goes to the dead-letter queue: it never loops
AMQP_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)
# Opening a channel on a connection that just dropped raises aiormq's bare RuntimeError("... closed"):
# for a publisher that is the broker being away too (503), never a 500.
PUBLISH_ERRORS: tuple[type[BaseException], ...] = (*AMQP_ERRORS, RuntimeError)


@dataclass(frozen=True, slots=True)
class Topology:
    prefix: str
    analytics: str = "analytics"

    @property
    def exchange(self) -> str:
        return f"{self.prefix}.deliveries"

    @property
    def queue(self) -> str:
        return f"{self.prefix}.deliveries"

    @property
    def dead_exchange(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def dead_queue(self) -> str:
        return f"{self.prefix}.deliveries.dead"

    async def declare(self, channel: AbstractChannel) -> AbstractExchange:
        """Declare everything (idempotent) and return the deliveries exchange."""
        dead = await channel.declare_exchange(self.dead_exchange, aio_pika.ExchangeType.FANOUT, durable=True)
        dead_q = await channel.declare_queue(
            self.dead_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead_q.bind(dead, routing_key="")
        exchange = await channel.declare_exchange(self.exchange, aio_pika.ExchangeType.DIRECT, durable=True)
        queue = await channel.declare_queue(
            self.queue,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-dead-letter-exchange": self.dead_exchange,
                "x-delivery-limit": DELIVERY_LIMIT,
            },
        )
        await queue.bind(exchange, routing_key=ROUTING_KEY)
        await channel.declare_exchange(self.analytics, aio_pika.ExchangeType.TOPIC, durable=True)
        return exchange


@asynccontextmanager
async def amqp_connection(url: str, name: str) -> AsyncIterator[AbstractRobustConnection]:
    """A robust connection (reconnects by itself) that is closed on exit."""
    try:
        connection = await aio_pika.connect_robust(
            url, client_properties={"connection_name": name}, timeout=10
        )
    except AMQP_ERRORS as exc:
        raise BrokerUnavailable(f"RabbitMQ is not reachable: {type(exc).__name__}") from exc
    try:
        yield connection
    finally:
        await connection.close()


class ConfirmedPublisher:
    """Publishes persistent messages and returns only once the broker confirmed them."""

    def __init__(self, connection: AbstractRobustConnection, topology: Topology, timeout_s: float) -> None:
        self._connection = connection
        self._topology = topology
        self._timeout_s = timeout_s
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._lock = asyncio.Lock()

    def _usable(self) -> AbstractExchange | None:
        if self._channel is None or self._channel.is_closed:
            return None
        return self._exchange

    async def _ready_exchange(self) -> AbstractExchange:
        exchange = self._usable()
        if exchange is not None:
            return exchange
        async with self._lock:
            exchange = self._usable()
            if exchange is None:
                self._channel = await self._connection.channel(publisher_confirms=True)
                exchange = self._exchange = await self._topology.declare(self._channel)
            return exchange

    async def ready(self) -> bool:
        """True when a confirming channel to the broker is open (opening one if needed)."""
        if self._connection.is_closed:
            return False
        try:
            await asyncio.wait_for(self._ready_exchange(), self._timeout_s)
        except PUBLISH_ERRORS:
            return False
        return True

    async def publish(self, body: bytes, *, message_id: str, headers: dict[str, Any] | None = None) -> None:
        message = aio_pika.Message(
            body,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type="application/json",
            message_id=message_id,
            headers=headers or {},
        )
        try:
            # One deadline for the whole publish (cheaper per message than wait_for's task and
            # aio-pika's per-step countdowns); an open channel skips the set-up path entirely.
            async with asyncio.timeout(self._timeout_s):
                exchange = self._usable() or await self._ready_exchange()
                confirm = await exchange.publish(message, ROUTING_KEY, mandatory=True)
        except PUBLISH_ERRORS as exc:
            raise BrokerUnavailable(f"the broker did not confirm: {type(exc).__name__}") from exc
        if not isinstance(confirm, Basic.Ack):
            raise BrokerUnavailable(f"the broker refused the message: {type(confirm).__name__}")
