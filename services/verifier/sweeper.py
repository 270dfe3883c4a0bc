"""The timeout sweep: pending connections past their deadline become ``failed``, each exactly once;
so do test windows that closed without a verified event.

Safe with many verifiers: each due connection is failed by a compare-and-set script, so when two
sweeps race only one of them changes it. A tick costs O(log N + due), whatever N pending there are.
"""

from __future__ import annotations

import asyncio
import logging

from shared.errors import StoreUnavailable
from shared.models import now_ms
from shared.store import Store

log = logging.getLogger(__name__)
MAX_ROUNDS = 100  # bounds one tick; the next tick goes on where this one stopped


async def sweep_once(store: Store, batch: int) -> int:
    """Fail every due pending connection; return how many this call failed."""
    failed = 0
    for _ in range(MAX_ROUNDS):
        now = now_ms()
        due = await store.due_pending(now, batch)
        for cid in due:
            if await store.expire_pending(cid, now):  # the store counts the transition
                failed += 1
        if len(due) < batch:
            break
    return failed


async def sweep_tests_once(store: Store, batch: int) -> int:
    """Fail every test window that closed without a verified event; return how many."""
    failed = 0
    for _ in range(MAX_ROUNDS):
        now = now_ms()
        due = await store.due_tests(now, batch)
        for member in due:
            if await store.expire_test(member, now):
                failed += 1
        if len(due) < batch:
            break
    return failed


async def sweep_forever(store: Store, interval_s: float, batch: int, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        try:
            await sweep_once(store, batch)
            await sweep_tests_once(store, batch)
        except StoreUnavailable:
            log.warning("sweep skipped: redis unavailable")
        try:
            await asyncio.wait_for(stopping.wait(), interval_s)
        except TimeoutError:
            pass
