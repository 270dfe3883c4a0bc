"""The consumers' watchdog: notices a consumer that stopped consuming, and rebuilds its connection.

aio-pika's robust connection reconnects by itself, but its restore path (reopen the channel, set the
prefetch, re-declare the topology, consume again) awaits the broker with no deadline. When the socket
under it is blackholed, one of those steps can wait forever: the process looks alive, the queue fills
up, and nothing is consumed. The watchdog does not trust that path. Every ``check_s`` it asks:

- is something being handled right now, or did a message arrive within ``stall_s``? then all is well;
- else, does a passive declare of each queue consumed (on a channel of its own, bounded by
  ``probe_timeout_s``) answer that they are all empty? then there is nothing to consume, and all is
  well too;
- else (messages are waiting, or the broker does not answer) the consumer is not consuming.

``until_stalled`` returns once that has lasted ``stall_s``; ``consume_until`` then drops the whole
connection and builds a fresh one, every step bounded, with backoff while the broker stays away. What
the old channel had not acked is redelivered. The verifier and the notifier both consume through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Protocol

from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractRobustConnection

from shared.backoff import Backoff
from shared.broker import AMQP_ERRORS, is_unreachable, open_channel
from shared.errors import BrokerUnavailable
from shared.runner import sleep_unless

log = logging.getLogger(__name__)
STALL_S = 10.0  # not consuming while messages wait (or the broker not answering) this long: reconnect
CHECK_S = 1.0
PROBE_TIMEOUT_S = 5.0
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0


class Watched(Protocol):
    """What the watchdog reads of a consumer, and how it is stopped for good."""

    @property
    def busy(self) -> bool: ...  # some message is being handled (e.g. held while Redis is away)

    @property
    def last_delivery_s(self) -> float: ...  # time.monotonic() when the broker last handed one over

    async def stop(self, grace_s: float) -> None: ...


class QueueProbe:
    """Reads how many messages wait in the consumed queues, on a channel of its own."""

    def __init__(self, connection: AbstractConnection, queues: tuple[str, ...], timeout_s: float) -> None:
        self._connection = connection
        self._queues = queues
        self._timeout_s = timeout_s
        self._channel: AbstractChannel | None = None

    async def waiting(self) -> int | None:
        """Messages ready in the queues; ``None`` when the broker did not answer in time."""
        total = 0
        try:
            async with asyncio.timeout(self._timeout_s):
                self._channel = await open_channel(self._connection, self._channel)
                # The raw channel: aio-pika's robust channel answers a passive declare of a queue it
                # knows from its cache, without asking the broker.
                underlay = await self._channel.get_underlay_channel()
                for queue in self._queues:
                    declared = await underlay.queue_declare(queue, passive=True)
                    total += declared.message_count or 0
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            return None
        return total

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(*AMQP_ERRORS):
                await asyncio.wait_for(self._channel.close(), self._timeout_s)


async def consuming(consumer: Watched, probe: QueueProbe, stall_s: float) -> bool:
    if consumer.busy or time.monotonic() - consumer.last_delivery_s < stall_s:
        return True
    return await probe.waiting() == 0


async def until_stalled(consumer: Watched, probe: QueueProbe, stall_s: float, check_s: float) -> None:
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


class Link:
    """The consuming connection in use right now (the watchdog replaces it), for health checks and gauges."""

    def __init__(self) -> None:
        self.connection: AbstractRobustConnection | None = None

    def current(self) -> AbstractRobustConnection | None:
        return self.connection

    def usable(self) -> bool:
        return self.connection is not None and not self.connection.is_closed


@dataclass(frozen=True, slots=True)
class Session:
    """One connection with its consumer on it; closing ``stack`` closes the connection."""

    stack: AsyncExitStack
    consumer: Watched
    connection: AbstractRobustConnection


Connect = Callable[[], Awaitable[Session]]


@dataclass(frozen=True, slots=True)
class Watch:
    """How a service's consumers are watched: the queues they consume, and the timings."""

    queues: tuple[str, ...]
    grace_s: float  # on stop: how long in-flight messages may take to finish
    stall_s: float = STALL_S
    check_s: float = CHECK_S
    probe_timeout_s: float = PROBE_TIMEOUT_S


async def consume_until(stop: asyncio.Event, first: Session, connect: Connect, link: Link, watch: Watch) -> None:
    """Consume until ``stop``; whenever the watchdog finds the consumer stalled, drop the connection and
    build a fresh one with ``connect`` (with backoff while the broker stays away)."""
    retry = Backoff(RETRY_FIRST_S, RETRY_MAX_S)
    current: Session | None = first
    while True:
        if current is None:
            if await sleep_unless(stop, retry.next_s()):
                return
            try:
                current = await connect()
            except Exception as exc:
                if not (isinstance(exc, BrokerUnavailable) or is_unreachable(exc)):
                    raise
                log.warning("could not reconnect to the broker", extra={"error": type(exc).__name__})
                continue
            log.info("consuming again on a fresh connection")
        link.connection = current.connection
        async with current.stack:
            if await _stopped_or_stalled(stop, current, watch):
                await current.consumer.stop(watch.grace_s)
                return
            log.warning("dropping the broker connection; a fresh one is built")
            link.connection = None
        current = None
        retry.reset()


async def _stopped_or_stalled(stop: asyncio.Event, session: Session, watch: Watch) -> bool:
    """True once ``stop`` is set; False once the watchdog finds the session's consumer stalled."""
    probe = QueueProbe(session.connection, watch.queues, watch.probe_timeout_s)
    stopped = asyncio.create_task(stop.wait())
    stalled = asyncio.create_task(until_stalled(session.consumer, probe, watch.stall_s, watch.check_s))
    try:
        await asyncio.wait((stopped, stalled), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stopped, stalled):
            task.cancel()
        await asyncio.gather(stopped, stalled, return_exceptions=True)
        await probe.close()
    return stop.is_set()
