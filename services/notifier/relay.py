"""The outbox relay: publishes what the transition scripts recorded in each connection's outbox to the
transitions exchange (confirmed), then drops it from the outbox. The silence sweep feeds it: a
connection whose expected interval passed without a verified event gets ``connection.silent``.

A connection is claimed (a lease in the outbox index) before it is read, so several notifier replicas
share the work; an entry is dropped only after the broker confirmed it, so a relay that dies at any
point loses nothing (the next one publishes it again: at least once, with the same event id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.notifier.events import event_body
from services.notifier.publisher import Publisher
from services.notifier.topology import NotifyTopology
from shared import metrics
from shared.errors import BrokerUnavailable, StoreUnavailable
from shared.models import now_ms
from shared.notify_events import EVENT_TYPES
from shared.notify_store import NotifyStore

log = logging.getLogger(__name__)
ENTRIES_PER_ROUND = 100
BROKER_AWAY_RETRY_MS = 1000


async def relay_connection(store: NotifyStore, publisher: Publisher, topology: NotifyTopology, cid: str) -> int:
    entries, record = await store.outbox(cid, ENTRIES_PER_ROUND)
    done: list[str] = []
    try:
        for entry in entries:
            kind = entry.get("type", "")
            body = event_body(entry, record) if record and kind in EVENT_TYPES else None
            if body is not None:
                await publisher.publish(topology.transitions, kind, body, message_id=str(entry["id"]))
                metrics.NOTIFICATIONS_RELAYED.labels(kind).inc()
                log.info("notification relayed", extra={"event_id": entry["id"], "type": kind, "connection_id": cid})
            done.append(str(entry.get("id", "")))
    finally:
        await store.outbox_done(cid, done, now_ms())
    return len(done)


async def relay_once(store: NotifyStore, publisher: Publisher, topology: NotifyTopology, batch: int,
                     lease_ms: int) -> int:
    relayed, now = 0, now_ms()
    for cid in await store.outbox_due(now, batch):
        if not await store.claim(cid, now, lease_ms):
            continue  # another relay has it
        try:
            relayed += await relay_connection(store, publisher, topology, cid)
        except BrokerUnavailable:
            await store.outbox_retry_at(cid, now_ms() + BROKER_AWAY_RETRY_MS)
            raise
    return relayed


async def sweep_silence_once(store: NotifyStore, batch: int) -> int:
    """Connections whose expected interval passed without a verified event: ``connection.silent``."""
    now = now_ms()
    due = await store.silence_due(now, batch)
    for cid in due:
        await store.mark_silent(cid, now)
    return len(due)


async def relay_forever(store: NotifyStore, publisher: Publisher, topology: NotifyTopology, interval_s: float,
                        batch: int, lease_s: float, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        relayed = 0
        try:
            await sweep_silence_once(store, batch)
            relayed = await relay_once(store, publisher, topology, batch, int(lease_s * 1000))
        except StoreUnavailable:
            log.warning("relay skipped: redis unavailable")
        except BrokerUnavailable:
            log.warning("relay paused: rabbitmq did not confirm")
        if relayed >= batch:
            continue  # more waiting: go on at once
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval_s)
