"""The consumer's watchdog: notices a consumer that stopped consuming and says so.

aio-pika's robust connection reconnects by itself, but its restore path (reopen the channel, set the
prefetch, re-declare the topology, consume again) awaits the broker with no deadline. When the socket
under it is blackholed, one of those steps can wait forever: the process looks alive, the queue fills
up, and nothing is consumed. The watchdog does not trust that path. Every ``check_s`` it asks:

- is something being handled right now, or did a message arrive within ``stall_s``? then all is well;
- else, does a passive declare (on a channel of its own, bounded by ``probe_timeout_s``) answer that the
  queue is empty? then there is nothing to consume, and all is well too;
- else (messages are waiting, or the broker does not answer) the consumer is not consuming.

``until_stalled`` returns once that has lasted ``stall_s``; the caller then drops the whole connection
and builds a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aio_pika.abc import AbstractChannel, AbstractConnection

from services.verifier.worker import Consumer
from shared.broker import AMQP_ERRORS, Topology, is_unreachable, open_channel

log = logging.getLogger(__name__)


class QueueProbe:
    """Reads how many messages wait in the deliveries queue, on a channel of its own."""

    def __init__(self, connection: AbstractConnection, topology: Topology, timeout_s: float) -> None:
        self._connection = connection
        self._queue = topology.queue
        self._timeout_s = timeout_s
        self._channel: AbstractChannel | None = None

    async def waiting(self) -> int | None:
        """Messages ready in the queue; ``None`` when the broker did not answer in time."""
        try:
            async with asyncio.timeout(self._timeout_s):
                self._channel = await open_channel(self._connection, self._channel)
                # The raw channel: aio-pika's robust channel answers a passive declare of a queue it
                # knows from its cache, without asking the broker.
                underlay = await self._channel.get_underlay_channel()
                declared = await underlay.queue_declare(self._queue, passive=True)
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            return None
        return declared.message_count or 0

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(*AMQP_ERRORS):
                await asyncio.wait_for(self._channel.close(), self._timeout_s)


async def consuming(consumer: Consumer, probe: QueueProbe, stall_s: float) -> bool:
    if consumer.busy or time.monotonic() - consumer.last_delivery_s < stall_s:
        return True
    return await probe.waiting() == 0


async def until_stalled(consumer: Consumer, probe: QueueProbe, stall_s: float, check_s: float) -> None:
    """Return once ``consumer`` has not been consuming (see the module's docstring) for ``stall_s``."""
    stalled_since: float | None = None
    while True:
        await asyncio.sleep(check_s)
        if await consuming(consumer, probe, stall_s):
            stalled_since = None
            continue
        now = time.monotonic()
        if stalled_since is None:
            stalled_since = now
        elif now - stalled_since >= stall_s:
            log.warning("the consumer is not consuming", extra={"for_s": round(now - stalled_since, 1)})
            return
