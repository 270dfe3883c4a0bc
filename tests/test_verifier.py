"""The verifier on the real broker and Redis: fates of messages, idempotence, several consumers."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import orjson
import redis.asyncio as aioredis

from services.verifier.worker import Fate, Verifier
from shared.broker import Topology
from shared.models import DeliveryMessage, now_ms
from shared.store import Store
from tests.signing import standard_webhooks_headers
from tests.system import System


def delivery(cid: str, **fields: object) -> DeliveryMessage:
    values: dict[str, object] = {
        "delivery_id": uuid.uuid4().hex,
        "connection_id": cid,
        "provider": "standard-webhooks",
        "received_at_ms": now_ms(),
        "outcome": "verified",
        "event_id": f"msg_{uuid.uuid4().hex}",
        **fields,
    }
    return DeliveryMessage(**values)  # type: ignore[arg-type]


async def test_poison_messages_are_dead_lettered(redis_client: aioredis.Redis, prefix: str) -> None:
    verifier = Verifier(Store(redis_client, prefix))
    cases = {
        b"not json at all": "not_json",
        b"[]": "bad_shape",
        orjson.dumps({"v": 99, "delivery_id": "x"}): "unknown_version",
        delivery(uuid.uuid4().hex).to_bytes(): "connection_missing",
    }
    for body, reason in cases.items():
        decision = await verifier.handle(body)
        assert decision.fate is Fate.DEAD_LETTER
        assert decision.reason == reason


async def test_the_same_message_twice_changes_nothing(system: System, redis_client: aioredis.Redis) -> None:
    conn = await system.create()
    verifier = Verifier(Store(redis_client, system.common["redis_prefix"]))
    msg = delivery(conn["id"]).to_bytes()
    first, second = await verifier.handle(msg), await verifier.handle(msg)
    assert (first.fate, first.reason) == (Fate.ACK, "applied")
    assert (second.fate, second.reason) == (Fate.ACK, "duplicate")
    view = await system.get(conn["id"])
    assert view["events_received"] == 1
    _, data = await system.api("GET", f"/v1/connections/{conn['id']}/deliveries")
    assert len(data["deliveries"]) == 1


async def test_dead_letter_queue_gets_the_reason_and_consuming_goes_on(system: System, amqp_url: str) -> None:
    topology = Topology(system.common["amqp_prefix"])
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await topology.declare(channel)
        await exchange.publish(aio_pika.Message(b"garbage", message_id="poison-1"), routing_key="delivery")
        conn = await system.create()
        body = b'{"type":"after.poison"}'
        status, _ = await system.post_hook(
            conn["webhook_url"], body, standard_webhooks_headers(conn["secret"], body, "msg_after")
        )
        assert status == 202
        await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
        dead = await channel.get_queue(topology.dead_queue, ensure=False)
        message = None
        for _ in range(50):
            message = await dead.get(fail=False)
            if message is not None:
                break
            await asyncio.sleep(0.1)
        assert message is not None, "the poison message never reached the dead-letter queue"
        assert message.body == b"garbage"
        assert message.headers["x-dead-reason"] == "not_json"
        await message.ack()


async def _delivered(system: System, url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST until answered other than 503: a receiver past its load-shedding bound (a busy machine) says
    503 with Retry-After, and a provider sends the same delivery again, as this does."""
    for _ in range(50):
        status, _ = await system.post_hook(url, body, headers)
        if status != 503:
            return status
        await asyncio.sleep(0.2)
    return status


async def test_two_verifiers_count_every_delivery_exactly_once(system: System) -> None:
    system.start_verifier()  # a second consumer on the same queue
    conns = [await system.create() for _ in range(4)]
    per_conn = 25
    sends = []
    for conn in conns:
        for i in range(per_conn):
            body = orjson.dumps({"type": "load", "n": i})
            headers = standard_webhooks_headers(conn["secret"], body, f"msg_{conn['id']}_{i}")
            sends.append(_delivered(system, conn["webhook_url"], body, headers))
    # each event also retried once by the "provider": the retry must not count
    retries = []
    for conn in conns:
        body = orjson.dumps({"type": "load", "n": 0})
        headers = standard_webhooks_headers(conn["secret"], body, f"msg_{conn['id']}_0")
        retries.append(_delivered(system, conn["webhook_url"], body, headers))
    results = await asyncio.gather(*sends, *retries)
    assert all(status == 202 for status in results)
    for conn in conns:
        view = await system.wait_for(conn["id"], lambda v: v["events_received"] >= per_conn, timeout_s=20)
        assert view["state"] == "connected"
    await asyncio.sleep(0.5)
    for conn in conns:
        assert (await system.get(conn["id"]))["events_received"] == per_conn

