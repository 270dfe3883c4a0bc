"""Only "Redis/RabbitMQ is unreachable" becomes StoreUnavailable/BrokerUnavailable; a bug stays a bug.

A bug inside a store call must not be mistaken for Redis being away: the verifier would hold that
delivery and retry it for ever. It is requeued instead, and the queue's delivery limit dead-letters it
(on the real broker), while consuming goes on.
"""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractIncomingMessage

from services.verifier.worker import Consumer, Fate, Verifier
from shared import broker
from shared import redis as shared_redis
from shared.broker import ROUTING_KEY, Topology
from shared.errors import StoreUnavailable
from shared.lua import Args
from shared.models import DeliveryMessage, now_ms
from shared.records import ConnectionRecord
from shared.store import Store

UVLOOP_CLOSED = "unable to perform operation on <TCPTransport closed=True reading=False 0x7f00>; the handler is closed"
BUGS = [RuntimeError("dictionary changed size during iteration"), OSError(22, "Invalid argument"),
        KeyError("secret_slot"), TypeError("unsupported operand")]


class BuggyStore(Store):
    """A store with a bug in the code that prepares one connection's script call."""

    def __init__(self, client: aioredis.Redis, prefix: str, doomed: str, bug: Exception) -> None:
        super().__init__(client, prefix)
        self.doomed, self.bug = doomed, bug

    def _apply_call(self, msg: DeliveryMessage, consumed_at_ms: int = 0) -> tuple[list[str], Args]:
        if msg.connection_id == self.doomed:
            raise self.bug
        return super()._apply_call(msg, consumed_at_ms)


def _delivery(cid: str) -> DeliveryMessage:
    return DeliveryMessage(delivery_id=uuid.uuid4().hex, connection_id=cid, provider="standard-webhooks",
                           received_at_ms=now_ms(), outcome="verified", event_id=f"msg_{uuid.uuid4().hex}")


async def _stored_connection(store: Store) -> str:
    cid, now = uuid.uuid4().hex, now_ms()
    await store.create(ConnectionRecord(
        id=cid, account_id="acct-boundary", provider="standard-webhooks", state="pending", version=1,
        webhook_url=f"http://x/hooks/{cid}", secret="whsec_x", pending_deadline_ms=now + 600_000,
        created_at_ms=now, updated_at_ms=now))
    return cid


def test_only_outages_count_as_redis_unreachable() -> None:
    assert shared_redis.is_unreachable(RuntimeError(UVLOOP_CLOSED))
    assert shared_redis.is_unreachable(ConnectionResetError())
    assert shared_redis.is_unreachable(TimeoutError())
    for bug in BUGS:
        assert not shared_redis.is_unreachable(bug), bug
    assert not shared_redis.is_unreachable(RuntimeError("unable to perform operation on a closed file"))


def test_only_outages_count_as_broker_unreachable() -> None:
    assert broker.is_unreachable(RuntimeError('<Connection: "amqp://guest:******@127.0.0.1:5672/" at 0x7f> closed'))
    assert broker.is_unreachable(RuntimeError("Connection was not opened"))
    assert broker.is_unreachable(ConnectionRefusedError())
    for bug in BUGS:
        assert not broker.is_unreachable(bug), bug
    assert not broker.is_unreachable(RuntimeError("the exchange is closed for business today, and closed"))


@pytest.mark.parametrize("bug", BUGS, ids=lambda e: type(e).__name__)
async def test_a_bug_in_a_store_call_is_requeued_not_held(
    redis_client: aioredis.Redis, prefix: str, bug: Exception
) -> None:
    store = BuggyStore(redis_client, prefix, uuid.uuid4().hex, bug)
    with pytest.raises(type(bug)):
        await store.apply_deliveries([_delivery(store.doomed)])  # inside the store's Redis call; not StoreUnavailable
    decision = await Verifier(store).handle(_delivery(store.doomed).to_bytes())
    assert (decision.fate, decision.reason) == (Fate.REQUEUE, "unexpected_error")


async def test_a_closed_transport_is_redis_unavailable(redis_client: aioredis.Redis, prefix: str) -> None:
    store = BuggyStore(redis_client, prefix, uuid.uuid4().hex, RuntimeError(UVLOOP_CLOSED))
    with pytest.raises(StoreUnavailable):
        await store.apply_deliveries([_delivery(store.doomed)])


async def test_a_connection_closed_under_a_write_is_redis_unavailable(redis_url: str) -> None:
    """redis-py writing on a connection a failover closed under it fails with an AttributeError about
    ``NoneType`` (its writer is gone) rather than a ConnectionError: that one is an outage; the same
    error raised anywhere else is a bug."""
    connection = aioredis.Redis.from_url(redis_url).connection_pool.make_connection()
    await connection.connect()
    writer = connection._writer
    connection._writer = None  # what a concurrent disconnect leaves behind, mid-command
    try:
        with pytest.raises((AttributeError, TypeError)) as raised:  # the write step redis-py runs then
            await connection._send_packed_command(connection.pack_command("PING"))
    finally:
        connection._writer = writer
        await connection.disconnect()
    assert shared_redis.is_unreachable(raised.value)
    try:
        None.writelines([])  # type: ignore[attr-defined]
    except AttributeError as ours:
        assert not shared_redis.is_unreachable(ours)


async def test_a_delivery_that_hits_a_bug_ends_dead_lettered_on_the_broker(
    amqp_url: str, redis_client: aioredis.Redis, prefix: str, amqp_cleanup: None
) -> None:
    store = BuggyStore(redis_client, prefix, uuid.uuid4().hex, RuntimeError("a bug, not an outage"))
    healthy = await _stored_connection(store)
    topology = Topology(prefix)
    verifier = Verifier(store)
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        consumer = Consumer(verifier, await connection.channel(publisher_confirms=True), topology)
        await consumer.start(prefetch=10)
        publisher = await connection.channel(publisher_confirms=True)
        exchange = await publisher.get_exchange(topology.exchange)
        doomed = _delivery(store.doomed)
        await exchange.publish(aio_pika.Message(doomed.to_bytes(), message_id=doomed.delivery_id), ROUTING_KEY)

        dead = await _next_dead(await publisher.get_queue(topology.dead_queue))
        assert dead.body == doomed.to_bytes()
        deaths = dead.headers.get("x-death")
        assert isinstance(deaths, list) and deaths[0]["reason"] == "delivery_limit"
        assert not verifier.stopping.is_set()

        # Consuming goes on: the next delivery is applied.
        ok = _delivery(healthy)
        await exchange.publish(aio_pika.Message(ok.to_bytes(), message_id=ok.delivery_id), ROUTING_KEY)
        while await redis_client.hget(store.keys.conn(healthy), "state") != "connected":
            await asyncio.sleep(0.05)
        await consumer.stop(grace_s=1.0)


async def _next_dead(queue: aio_pika.abc.AbstractQueue) -> AbstractIncomingMessage:
    while True:  # the test's timeout bounds this: a delivery held for ever never arrives here
        message = await queue.get(no_ack=True, fail=False)
        if message is not None:
            return message
        await asyncio.sleep(0.05)
