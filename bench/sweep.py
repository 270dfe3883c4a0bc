"""The timeout sweep's cost with few due connections among many pending, and Redis clean-up."""

from __future__ import annotations

import time
import uuid
from typing import Any

import redis.asyncio as aioredis

from bench.plan import Plan
from bench.stats import median
from services.verifier.sweeper import sweep_once
from shared.store import Store


async def sweep_cost(plan: Plan, void: list[str]) -> dict[int, float]:
    """Median tick time with ``few`` due connections among N pending, for a small and a large N.
    Two separate pending indexes; ticks alternate between them, so both see the same box. What went
    wrong is added to ``void``."""
    client = aioredis.Redis.from_url(plan.redis_url, decode_responses=True)
    sizes = sorted({1000, plan.sweep_pending})
    stores = {size: Store(client, f"{plan.prefix}:sw{size}") for size in sizes}
    samples: dict[int, list[float]] = {size: [] for size in sizes}
    few, ticks = 10, 5 if plan.quick else 15
    far = int(time.time() * 1000) + 86_400_000
    try:
        for size, store in stores.items():
            await fill_pending(store, size, far, 0)
            await add_due(store, few)
            await sweep_once(store, 500)  # warm-up: scripts loaded, connections open
        for _ in range(ticks):
            for size, store in stores.items():
                await add_due(store, few)
                started = time.perf_counter()
                failed = await sweep_once(store, 500)
                samples[size].append((time.perf_counter() - started) * 1000)
                if failed != few:
                    void.append(f"sweep: a tick failed {failed} connections, expected {few}")
    finally:
        await delete_prefix(client, f"{plan.prefix}:sw")
        await client.aclose()
    return {size: median(values) for size, values in samples.items()}


async def fill_pending(store: Any, n: int, deadline_ms: int, start: int) -> int:
    chunk = 5000
    for offset in range(0, n, chunk):
        async with store.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(store.keys.pending, {f"idle{start + offset + i:08d}": deadline_ms
                                           for i in range(min(chunk, n - offset))})
            await pipe.execute()
    return start + n


async def add_due(store: Any, few: int) -> None:
    past = int(time.time() * 1000) - 1000
    async with store.redis.pipeline(transaction=False) as pipe:
        for _ in range(few):
            cid = uuid.uuid4().hex
            pipe.hset(store.keys.conn(cid), mapping={"id": cid, "account_id": "acct-sweep", "state": "pending",
                                                     "pending_deadline": past, "seen": "{}", "version": 1})
            pipe.zadd(store.keys.pending, {cid: past})
        await pipe.execute()


async def delete_prefix(client: aioredis.Redis, prefix: str) -> None:
    batch: list[str] = []
    async for key in client.scan_iter(match=f"{prefix}*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            await client.unlink(*batch)
            batch.clear()
    if batch:
        await client.unlink(*batch)
