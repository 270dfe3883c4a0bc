"""The timeout sweep: pending connections past their deadline become ``failed``, each exactly once;
so do test windows that closed without a verified event. Disconnected connections past their
retention (``DISCONNECTED_RETENTION_S``, set when they were disconnected) are purged.

Safe with many verifiers: each due item is failed by a compare-and-set script, so when two sweeps
race only one of them changes it. A tick costs O(log N + due), whatever N pending there are.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from shared.errors import StoreUnavailable
from shared.models import now_ms
from shared.runner import sleep_unless
from shared.store import Store

log = logging.getLogger(__name__)
MAX_ROUNDS = 100  # bounds one tick; the next tick goes on where this one stopped
Due = Callable[[int, int], Awaitable[list[str]]]
Expire = Callable[[str, int], Awaitable[str | None]]


async def _sweep(due: Due, expire: Expire, batch: int) -> int:
    """Fail every due item of one index (``batch`` at a time); return how many this call failed."""
    failed = 0
    for _ in range(MAX_ROUNDS):
        now = now_ms()
        items = await due(now, batch)
        for item in items:
            if await expire(item, now):  # the store counts the transition
                failed += 1
        if len(items) < batch:
            break
    return failed


async def sweep_once(store: Store, batch: int) -> int:
    """One tick: fail every due pending connection, then every test window that closed without a
    verified event; return how many connections and windows this call failed."""
    connections = await _sweep(store.due_pending, store.expire_pending, batch)
    windows = await _sweep(store.due_tests, store.expire_test, batch)
    await _sweep(store.due_disconnected, store.purge_due, batch)  # retention: erase, not a failure
    return connections + windows


async def sweep_forever(store: Store, interval_s: float, batch: int, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        try:
            await sweep_once(store, batch)
        except StoreUnavailable:
            log.warning("sweep skipped: redis unavailable")
        await sleep_unless(stopping, interval_s)
