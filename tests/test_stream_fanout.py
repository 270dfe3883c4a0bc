"""One change is read from Redis once, however many streams show it (the SSE fan-out's cost)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from services.status_api.hub import Change, ChangeHub
from shared.records import ConnectionRecord
from shared.store import Store


class CountingStore:
    """Our own seam (``ChangeHub.read`` takes anything with ``get``) wrapping the real store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reads = 0

    async def get(self, cid: str) -> ConnectionRecord | None:
        self.reads += 1
        return await self.store.get(cid)


async def test_many_streams_share_one_read_per_change(redis_client: aioredis.Redis, prefix: str) -> None:
    store = Store(redis_client, prefix)
    await redis_client.hset(store.keys.conn("c1"), mapping={"id": "c1", "account_id": "a", "state": "connected",
                                                                 "version": "3"})
    hub = ChangeHub(redis_client, store.keys.changes, 16)
    counting = CountingStore(store)
    change = Change("c1", "a", 3)
    rows = await asyncio.gather(*(hub.read(counting, change) for _ in range(500)))  # type: ignore[arg-type]
    assert counting.reads == 1
    assert all(row is not None and (row.id, row.account_id, row.version) == ("c1", "a", 3) for row in rows)
    assert len({id(row) for row in rows}) == 1  # one record, shared
    await hub.read(counting, Change("c1", "a", 4))  # a newer change is read again
    assert counting.reads == 2


async def test_a_stream_going_away_does_not_cancel_the_shared_read(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    store = Store(redis_client, prefix)
    await redis_client.hset(store.keys.conn("c2"), mapping={"id": "c2", "account_id": "a", "state": "pending",
                                                                 "version": "1"})
    hub = ChangeHub(redis_client, store.keys.changes, 16)
    change = Change("c2", "a", 1)
    leaving = asyncio.ensure_future(hub.read(store, change))
    staying = hub.read(store, change)
    leaving.cancel()
    assert (await staying) is not None
