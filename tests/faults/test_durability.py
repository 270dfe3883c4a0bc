"""The durability chain, checked on the real broker rather than read off the code:

- the deliveries queue (and its dead-letter queue) is durable and a quorum queue: re-declaring it any
  other way is refused by RabbitMQ (406 PRECONDITION_FAILED);
- what the receiver's publisher sends is persistent (delivery mode 2) and published with confirms;
- a message the broker cannot route to the queue is *not* confirmed as stored: the publisher raises
  ``BrokerUnavailable`` (the receiver's 503), never a silent success.
"""

from __future__ import annotations

import uuid

import aio_pika
import aiormq
import pytest

from shared.broker import ROUTING_KEY, ConfirmedPublisher, Topology, amqp_connection
from shared.errors import BrokerUnavailable


@pytest.mark.parametrize("queue_of", ["queue", "dead_queue"])
@pytest.mark.parametrize("other", [{"durable": False}, {"arguments": {"x-queue-type": "classic"}}])
async def test_the_queues_are_durable_quorum_queues(
    amqp_url: str, prefix: str, amqp_cleanup: None, queue_of: str, other: dict[str, object]
) -> None:
    topology = Topology(prefix)
    async with amqp_connection(amqp_url, "test") as connection:
        await topology.declare(await connection.channel())
        channel = await connection.channel()
        kwargs: dict[str, object] = {"durable": True, "arguments": {"x-queue-type": "quorum"}, **other}
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
            await channel.declare_queue(getattr(topology, queue_of), **kwargs)  # type: ignore[arg-type]


async def test_published_deliveries_are_persistent_and_confirmed(
    amqp_url: str, prefix: str, amqp_cleanup: None
) -> None:
    topology = Topology(prefix)
    async with amqp_connection(amqp_url, "test") as connection:
        publisher = ConfirmedPublisher(connection, topology, timeout_s=5)
        message_id = uuid.uuid4().hex
        await publisher.publish(b'{"v": 1}', message_id=message_id)  # returns only on the broker's ack
        channel = await connection.channel()
        queue = await channel.declare_queue(topology.queue, passive=True)
        message = await queue.get(timeout=5)
        assert message is not None
        assert message.message_id == message_id
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        await message.ack()


async def test_an_unroutable_delivery_is_not_reported_as_stored(
    amqp_url: str, prefix: str, amqp_cleanup: None
) -> None:
    topology = Topology(prefix)
    async with amqp_connection(amqp_url, "test") as connection:
        publisher = ConfirmedPublisher(connection, topology, timeout_s=5)
        await publisher.publish(b'{"v": 1}', message_id=uuid.uuid4().hex)  # topology declared
        channel = await connection.channel()
        queue = await channel.declare_queue(topology.queue, passive=True)
        await queue.unbind(topology.exchange, ROUTING_KEY)  # the queue no longer receives anything
        with pytest.raises(BrokerUnavailable):
            await publisher.publish(b'{"v": 1}', message_id=uuid.uuid4().hex)
        await queue.bind(topology.exchange, ROUTING_KEY)
