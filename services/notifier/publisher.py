"""A confirmed publisher to any exchange of the notifier's topology: returns only once the broker
confirmed the persistent message (routed to a queue: ``mandatory``)."""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import AbstractRobustConnection

from services.notifier.topology import NotifyTopology
from shared.broker import ConfirmChannel, confirmed, persistent_message
from shared.deadlines import Deadlines


class Publisher:
    def __init__(self, connection: AbstractRobustConnection, topology: NotifyTopology, timeout_s: float) -> None:
        self._channel: ConfirmChannel[None] = ConfirmChannel(connection, topology.declare)
        self._deadlines = Deadlines(timeout_s)

    async def publish(self, exchange: str, routing_key: str, body: bytes, *, message_id: str,
                      headers: dict[str, Any] | None = None) -> None:
        """``exchange`` "" is the default exchange (``routing_key`` names the queue)."""
        message = persistent_message(body, message_id, headers)
        await confirmed(self._publish(exchange, routing_key, message), self._deadlines)

    async def _publish(self, exchange: str, routing_key: str, message: aio_pika.Message) -> object:
        channel, _ = self._channel.current() or await self._channel.get()
        target = channel.default_exchange if exchange == "" else await channel.get_exchange(exchange)
        return await self._channel.publish_on(channel, target.publish(message, routing_key, mandatory=True))

    async def close(self) -> None:
        await self._channel.close()
