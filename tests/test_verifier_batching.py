"""The verifier's batching, on the real broker and the real Redis: a multiple-ack never covers a
message that is not settled, and deliveries that share a Redis round trip are each counted once."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from services.verifier.acks import BatchAcker
from services.verifier.batching import ApplyBatcher
from shared.models import DeliveryMessage, now_ms
from shared.store import ApplyResult, Store


async def _take(channel: AbstractChannel, queue: str, n: int) -> list[AbstractIncomingMessage]:
    q = await channel.get_queue(queue)
    taken = []
    for _ in range(n):
        message = await q.get(no_ack=False, fail=True)
        assert message is not None
        taken.append(message)
    return taken


async def _left(connection: aio_pika.abc.AbstractConnection, queue: str) -> int:
    channel = await connection.channel()
    declared = await channel.declare_queue(queue, passive=True)
    await channel.close()
    return int(declared.declaration_result.message_count or 0)


async def test_a_batch_stops_at_the_first_unsettled_message(amqp_url: str, prefix: str) -> None:
    queue = f"{prefix}.acks"
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=False, auto_delete=False)
        for i in range(4):
            await channel.default_exchange.publish(aio_pika.Message(str(i).encode()), queue)

        first, second, third, fourth = await _take(channel, queue, 4)
        acker = BatchAcker(max_batch=100, max_delay_s=60)
        for stored in (first, third, fourth):  # the second one's effect is not stored
            acker.ack(stored)
        await acker.close()
        await channel.close()  # whatever was not acked goes back to the queue
        assert await _left(connection, queue) == 3  # only the first was acked

        channel = await connection.channel()
        again = await _take(channel, queue, 3)
        acker = BatchAcker(max_batch=100, max_delay_s=60)
        await again[0].nack(requeue=False)  # settled on its own (a dead-letter or a drop)
        acker.settled(again[0])
        acker.ack(again[1])
        acker.ack(again[2])
        await acker.close()
        await channel.close()
        assert await _left(connection, queue) == 0

        channel = await connection.channel()
        await channel.queue_delete(queue)


def _delivery(cid: str, event_id: str) -> DeliveryMessage:
    return DeliveryMessage(uuid.uuid4().hex, cid, "standard-webhooks", now_ms(), "verified", event_id=event_id)


async def test_deliveries_in_one_round_trip_are_each_counted_once(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    store = Store(redis_client, prefix)
    cid = uuid.uuid4().hex
    await redis_client.hset(store.keys.conn(cid), mapping={
        "id": cid, "account_id": "acct", "provider": "standard-webhooks", "state": "pending", "version": 1,
        "seen": "{}", "events_received": 0,
    })
    batcher = ApplyBatcher(store)
    same_event = [_delivery(cid, "evt_1"), _delivery(cid, "evt_1")]  # a provider's retry
    others = [_delivery(cid, f"evt_{n}") for n in range(2, 6)]
    gone = _delivery(uuid.uuid4().hex, "evt_x")  # a connection that does not exist
    results = await asyncio.gather(*(batcher.apply_delivery(m) for m in [*same_event, *others, gone]))
    assert [r.status for r in results] == ["applied", "duplicate"] + ["applied"] * 4 + ["missing"]
    assert results[0] == ApplyResult("applied", "pending", "connected")
    stored = await redis_client.hmget(store.keys.conn(cid), ["events_received", "version", "state"])
    assert stored == ["5", "6", "connected"]
