"""A confirmed publisher to any exchange of the notifier's topology: returns only once the broker
confirmed the persistent message (routed to a queue: ``mandatory``)."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from services.notifier.topology import NotifyTopology
from shared.broker import confirmed, is_unreachable, persistent_message


class Publisher:
    def __init__(self, connection: AbstractRobustConnection, topology: NotifyTopology, timeout_s: float) -> None:
        self._connection = connection
        self._topology = topology
        self._timeout_s = timeout_s
        self._channel: AbstractChannel | None = None
        self._lock = asyncio.Lock()

    async def _ready_channel(self) -> AbstractChannel:
        async with self._lock:
            if self._channel is None or self._channel.is_closed:
                channel = await self._connection.channel(publisher_confirms=True)
                await self._topology.declare(channel)
                self._channel = channel
            return self._channel

    async def publish(self, exchange: str, routing_key: str, body: bytes, *, message_id: str,
                      headers: dict[str, Any] | None = None) -> None:
        """``exchange`` "" is the default exchange (``routing_key`` names the queue)."""
        message = persistent_message(body, message_id, headers)
        await confirmed(self._publish(exchange, routing_key, message), self._timeout_s)

    async def _publish(self, exchange: str, routing_key: str, message: aio_pika.Message) -> object:
        channel = await self._ready_channel()
        target = channel.default_exchange if exchange == "" else await channel.get_exchange(exchange)
        return await target.publish(message, routing_key, mandatory=True)

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            try:
                await self._channel.close()
            except Exception as exc:
                if not is_unreachable(exc):
                    raise
