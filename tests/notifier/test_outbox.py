"""The outbox on the real Redis: a transition is recorded with its notification in one step, and a
process that dies between the script and the index write loses nothing (the redelivered delivery
indexes it again); the relay drops only what it published."""

from __future__ import annotations

import orjson
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.models import now_ms
from shared.notify_store import NotifyStore
from shared.store import Store
from tests.system import System
from tests.test_verifier import delivery


async def test_a_crash_before_the_index_write_is_repaired_by_the_redelivery(
    system: System, redis_client: aioredis.Redis
) -> None:
    prefix = system.common["redis_prefix"]
    keys, store = Keys(prefix), Store(redis_client, prefix)
    conn = await system.create()
    msg = delivery(conn["id"])

    result = await store.apply_delivery(msg)
    assert (result.status, result.to_state) == ("applied", "connected")
    [entry] = [orjson.loads(e) for e in await redis_client.lrange(keys.outbox(conn["id"]), 0, -1)]
    assert entry["type"] == "connection.connected" and entry["id"].startswith(f"evt_{conn['id']}_")
    assert await redis_client.zscore(keys.outbox_index, conn["id"]) is not None

    await redis_client.zrem(keys.outbox_index, conn["id"])  # as if the verifier died right after the script
    again = await store.apply_delivery(msg)  # RabbitMQ redelivers the unacked message
    assert again.status == "duplicate"
    assert await redis_client.zscore(keys.outbox_index, conn["id"]) is not None
    assert await redis_client.llen(keys.outbox(conn["id"])) == 1  # recorded once


async def test_the_relay_drops_only_what_it_published(system: System, redis_client: aioredis.Redis) -> None:
    prefix = system.common["redis_prefix"]
    keys, store, notify = Keys(prefix), Store(redis_client, prefix), NotifyStore(redis_client, prefix)
    conn = await system.create()
    await store.apply_delivery(delivery(conn["id"]))
    entries, record = await notify.outbox(conn["id"], 100)
    assert [e["type"] for e in entries] == ["connection.connected"]
    assert record is not None and record.state == "connected"

    now = now_ms()
    assert await notify.claim(conn["id"], now, 30_000)
    assert not await notify.claim(conn["id"], now, 30_000)  # another relay: already claimed
    await store.disconnect(conn["id"], now_ms())  # appended while the first entry is being published
    await notify.outbox_done(conn["id"], [entries[0]["id"]], now_ms())

    [left] = [orjson.loads(e) for e in await redis_client.lrange(keys.outbox(conn["id"]), 0, -1)]
    assert left["type"] == "connection.disconnected"
    assert await redis_client.zscore(keys.outbox_index, conn["id"]) is not None  # still to relay
    await notify.outbox_done(conn["id"], [left["id"]], now_ms())
    assert await redis_client.llen(keys.outbox(conn["id"])) == 0
    assert await redis_client.zscore(keys.outbox_index, conn["id"]) is None
