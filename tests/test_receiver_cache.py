"""The receiver's connection cache: no stale secret or state is ever acted on once its change is stored.

The system tests run with a cache TTL far longer than the tests, so only the eviction by the
``changes`` channel (or the fresh read on a mismatch) can make them pass.
"""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
import redis.asyncio as aioredis

from services.receiver.lookup import TargetCache
from shared.store import Store
from tests.signing import standard_webhooks_headers
from tests.system import System, start_system

EVENT = orjson.dumps({"type": "invoice.paid"})


@pytest.fixture
async def cached_system(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[System]:
    monkeypatch.setenv("TARGET_CACHE_TTL_S", "3600")
    async with start_system(amqp_url, redis_url, prefix) as running:
        yield running


async def _hook(system: System, conn: dict[str, str], secret: str) -> int:
    headers = standard_webhooks_headers(secret, EVENT, f"msg_{uuid.uuid4().hex}")
    status, _ = await system.post_hook(conn["webhook_url"], EVENT, headers)
    return status


async def test_a_new_secret_verifies_right_after_reconnect(cached_system: System) -> None:
    system = cached_system
    conn = await system.create()
    assert await _hook(system, conn, conn["secret"]) == 202  # now cached
    new_secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    status, _ = await system.api("POST", f"/v1/connections/{conn['id']}/reconnect", json={"secret": new_secret})
    assert status == 200
    assert await _hook(system, conn, new_secret) == 202


async def test_a_disconnected_connection_is_refused_once_its_change_arrives(cached_system: System) -> None:
    system = cached_system
    conn = await system.create()
    assert await _hook(system, conn, conn["secret"]) == 202  # now cached
    status, _ = await system.api("DELETE", f"/v1/connections/{conn['id']}")
    assert status == 200
    statuses = []
    for _ in range(40):  # the change travels through Redis pub/sub: allow it a moment
        statuses.append(await _hook(system, conn, conn["secret"]))
        if statuses[-1] == 410:
            break
        await asyncio.sleep(0.05)
    assert statuses[-1] == 410, statuses


async def _stored_connection(client: aioredis.Redis, store: Store, state: str = "connected") -> str:
    cid = uuid.uuid4().hex
    await client.hset(store.keys.conn(cid), mapping={
        "id": cid, "provider": "standard-webhooks", "state": state, "secret": "whsec_AAAA", "settings": "{}",
        "webhook_url": f"http://example.invalid/hooks/{cid}",
    })
    return cid


def _change(cid: str, state: str) -> bytes:
    return orjson.dumps({"id": cid, "account_id": "a", "version": 2, "state": state})


async def test_cache_keeps_nothing_until_subscribed(redis_client: aioredis.Redis, prefix: str) -> None:
    store = Store(redis_client, prefix)
    cache = TargetCache(store, ttl_s=3600, max_entries=10)
    cid = await _stored_connection(redis_client, store)
    target, cached = await cache.get(cid, 0)
    assert target is not None and target.state == "connected" and not cached
    _, cached = await cache.get(cid, 0)
    assert not cached  # not subscribed: it could miss a change, so it keeps nothing


async def test_cache_evicts_on_the_changes_that_matter(redis_client: aioredis.Redis, prefix: str) -> None:
    store = Store(redis_client, prefix)
    cache = TargetCache(store, ttl_s=3600, max_entries=10)
    cache.live = True
    cid = await _stored_connection(redis_client, store)
    await cache.get(cid, 0)
    cache.on_change(_change(cid, "connected"))  # another event counted: nothing the receiver uses
    assert (await cache.get(cid, 0))[1] is True
    cache.on_change(_change(cid, "pending"))  # a reconnect: maybe a new secret
    assert (await cache.get(cid, 0))[1] is False
    cache.on_change(_change(cid, "disconnected"))
    await redis_client.hset(store.keys.conn(cid), "state", "disconnected")
    target, cached = await cache.get(cid, 0)
    assert target is not None and target.state == "disconnected" and not cached


async def test_a_read_that_raced_with_a_change_is_not_kept(redis_client: aioredis.Redis, prefix: str) -> None:
    store = Store(redis_client, prefix)
    cache = TargetCache(store, ttl_s=3600, max_entries=10)
    cache.live = True
    cid = await _stored_connection(redis_client, store)
    read = asyncio.create_task(cache.reload(cid, 0))
    await asyncio.sleep(0)  # the read is in flight
    cache.on_change(_change(cid, "connected"))
    assert (await read) is not None
    assert (await cache.get(cid, 0))[1] is False  # the raced read was used, not kept


async def test_cache_is_bounded(redis_client: aioredis.Redis, prefix: str) -> None:
    store = Store(redis_client, prefix)
    cache = TargetCache(store, ttl_s=3600, max_entries=2)
    cache.live = True
    ids = [await _stored_connection(redis_client, store) for _ in range(3)]
    for cid in ids:
        await cache.get(cid, 0)
    assert [(await cache.get(cid, 0))[1] for cid in reversed(ids)] == [True, True, False]  # oldest out


async def test_a_cached_previous_secret_retires_when_its_window_ends(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    store = Store(redis_client, prefix)
    cache = TargetCache(store, ttl_s=3600, max_entries=10)
    cache.live = True
    cid = await _stored_connection(redis_client, store)
    await redis_client.hset(store.keys.conn(cid), mapping={"prev_secret": "whsec_OLD", "prev_secret_until": 5000})
    target, _ = await cache.get(cid, 1000)
    assert target is not None and target.previous_secret == "whsec_OLD"
    target, cached = await cache.get(cid, 6000)  # the rotation window is over: no Redis change says so
    assert cached and target is not None
    assert target.previous_secret is None and target.retired_secret == "whsec_OLD"


async def test_misses_of_one_loop_turn_are_read_in_one_round_trip(redis_client: aioredis.Redis, prefix: str) -> None:
    store = Store(redis_client, prefix)
    cache = TargetCache(store, ttl_s=3600, max_entries=100)
    cache.live = True
    ids = [await _stored_connection(redis_client, store) for _ in range(5)]
    await redis_client.hset(store.keys.conn(ids[1]), "state", "failed")
    unknown = uuid.uuid4().hex
    asked = [*ids, ids[0], unknown]  # the same connection twice, and one that does not exist
    got = await asyncio.gather(*(cache.get(cid, 0) for cid in asked))
    assert cache.reads.batches == 1
    assert [t.connection_id if t else None for t, _ in got] == [*ids, ids[0], None]
    assert [t.state if t else None for t, _ in got] == ["connected", "failed", "connected", "connected",
                                                        "connected", "connected", None]
    assert all(not cached for _, cached in got)
    again = [await cache.get(cid, 0) for cid in ids]
    assert all(cached for _, cached in again)  # kept: now from the cache, no more reads
    assert cache.reads.batches == 1


async def test_a_batched_read_that_fails_fails_every_request_in_it(prefix: str) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)  # nothing listens there
    cache = TargetCache(Store(client, prefix), ttl_s=3600, max_entries=10)
    results = await asyncio.gather(*(cache.get(uuid.uuid4().hex, 0) for _ in range(3)), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["StoreUnavailable"] * 3
    assert cache.reads.batches == 1
    await client.aclose()


async def test_a_request_given_up_on_does_not_cancel_the_read_others_wait_for(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    store = Store(redis_client, prefix)
    cache = TargetCache(store, ttl_s=3600, max_entries=10)
    cid = await _stored_connection(redis_client, store)
    first, second = asyncio.create_task(cache.get(cid, 0)), asyncio.create_task(cache.get(cid, 0))
    await asyncio.sleep(0)  # both wait on the same read
    first.cancel()
    target, _ = await second
    assert target is not None and target.connection_id == cid and first.cancelled()
