"""The shared-state gauges, refreshed by every verifier replica every few seconds.

Bounded cost per refresh, whatever the number of connections: one HGETALL of the per-state counters
(kept by the store on every transition), one ZCOUNT on the pending index, and one passive queue
declare per queue. No SCAN, ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from shared import metrics
from shared.broker import AMQP_ERRORS, Topology, open_channel
from shared.errors import BrokerUnavailable, StoreUnavailable
from shared.models import STATES, now_ms
from shared.runner import sleep_unless
from shared.store import Store

log = logging.getLogger(__name__)
REFRESH_TIMEOUT_S = 10.0  # a broker or Redis that hangs must not hang the refresher


async def refresh_store_gauges(store: Store) -> None:
    counts = await store.state_counts()
    for state in STATES:
        metrics.CONNECTIONS.labels(state).set(counts.get(state, 0))
    metrics.PENDING_PAST_DEADLINE.set(await store.pending_past_deadline(now_ms()))


class QueueDepth:
    """Reads queue depths with passive declares on a channel of its own (a failed passive declare
    closes its channel; the consumer's channel is never put at risk)."""

    def __init__(
        self, connection: Callable[[], AbstractRobustConnection | None], topology: Topology
    ) -> None:
        self._connection = connection  # the one in use now: the verifier replaces a stalled connection
        self._queues = {"deliveries": topology.queue, "dead_letter": topology.dead_queue}
        self._channel: AbstractChannel | None = None
        self._channel_of: AbstractRobustConnection | None = None

    async def refresh(self) -> None:
        connection = self._connection()
        if connection is None:
            raise BrokerUnavailable("no broker connection right now")
        if connection is not self._channel_of:
            self._channel, self._channel_of = None, connection
        self._channel = await open_channel(connection, self._channel)
        for role, name in self._queues.items():
            queue = await self._channel.declare_queue(name, passive=True)
            result = queue.declaration_result
            metrics.QUEUE_MESSAGES.labels(role).set(result.message_count or 0)
            metrics.QUEUE_CONSUMERS.labels(role).set(result.consumer_count or 0)

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(*AMQP_ERRORS):
                await self._channel.close()


async def _refresh_once(store: Store, depth: QueueDepth) -> None:
    await refresh_store_gauges(store)
    await depth.refresh()
    metrics.GAUGES_REFRESHED.set(time.time())


async def refresh_forever(
    store: Store, depth: QueueDepth, interval_s: float, stopping: asyncio.Event
) -> None:
    while not stopping.is_set():
        try:
            await asyncio.wait_for(_refresh_once(store, depth), REFRESH_TIMEOUT_S)
        except StoreUnavailable:
            log.warning("gauges not refreshed: redis unavailable")
        except Exception as exc:  # metrics never stop the verifier; the freshness gauge shows it
            log.warning("gauges not refreshed", extra={"error": type(exc).__name__})
        await sleep_unless(stopping, interval_s)
    await depth.close()
