"""Poison messages in the middle of real traffic: each goes to ``<prefix>.deliveries.dead`` with its
reason in ``x-dead-reason``, and the verifier (a real subprocess) goes on consuming."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import aiohttp
import orjson
import redis.asyncio as aioredis

from shared.broker import ROUTING_KEY, Topology
from shared.keys import Keys
from shared.models import DeliveryMessage, now_ms
from tests.faults.harness import Services
from tests.faults.ledger import Ledger, Sender, wait_stored

COMMAND = ".venv/bin/python -m pytest tests/faults/test_poison.py -q"
EVENTS = 400


def _delivery(cid: str) -> bytes:
    return DeliveryMessage(
        delivery_id=uuid.uuid4().hex, connection_id=cid, provider="generic-hmac-sha256",
        received_at_ms=now_ms(), outcome="verified", event_id=f"evt-{uuid.uuid4().hex}",
    ).to_bytes()


async def test_poison_messages_are_dead_lettered_and_consuming_goes_on(
    services: Services, receiver_port: int, make_targets, prefix: str, amqp_url: str,
    redis_client: aioredis.Redis, session: aiohttp.ClientSession,
) -> None:
    receiver = services.make("receiver")
    receiver.port = receiver_port
    await receiver.start()
    await services.start("verifier")
    targets = await make_targets(3)
    doomed = targets.pop()  # a connection deleted while its delivery waits in the queue
    await redis_client.delete(Keys(prefix).conn(doomed.cid))
    poison = {
        "not_json": b"\x00\xffnot json at all",
        "unknown_version": orjson.dumps({"v": 99, "delivery_id": "x", "connection_id": "y"}),
        "connection_missing": _delivery(uuid.uuid4().hex),  # a connection that never existed
        "connection_deleted": _delivery(doomed.cid),
    }
    ledger = Ledger("poison")
    sender = Sender(session, ledger, targets)
    items = [(targets[i % len(targets)], f"evt-poison-{i}") for i in range(EVENTS)]

    await sender.send_many(items[: EVENTS // 2])
    await _publish(amqp_url, prefix, list(poison.values()))
    await sender.send_many(items[EVENTS // 2 :])  # traffic after the poison is consumed too
    stored = await wait_stored(redis_client, prefix, targets, len(ledger.accepted_events))
    dead = await _drain_dead(amqp_url, prefix, expected=len(poison))

    reasons = sorted(reason for reason, _ in dead)
    ledger.extra.update(poison_published=len(poison), dead_lettered=len(dead), dead_reasons=reasons)
    await ledger.reconcile(redis_client, prefix, targets)
    ledger.write(COMMAND)
    print(ledger.summary())
    assert reasons == sorted(["not_json", "unknown_version", "connection_missing", "connection_missing"])
    assert {body for _, body in dead} == set(poison.values()), "the dead letter keeps the original body"
    assert stored == EVENTS
    ledger.assert_clean()


async def _publish(amqp_url: str, prefix: str, bodies: list[bytes]) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(Topology(prefix).exchange)
        for body in bodies:
            await exchange.publish(aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                                    message_id=uuid.uuid4().hex), ROUTING_KEY)


async def _drain_dead(amqp_url: str, prefix: str, expected: int) -> list[tuple[str, bytes]]:
    found: list[tuple[str, bytes]] = []
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(Topology(prefix).dead_queue, passive=True)
        for _ in range(200):
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                if len(found) >= expected:
                    break
                await asyncio.sleep(0.05)
                continue
            found.append((str(message.headers.get("x-dead-reason")), message.body))
    return found
