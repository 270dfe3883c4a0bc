"""The verifier's consumer: ``handle(body) -> Decision`` with no AMQP types, and a thin consume loop.

One place decides each message's fate:

- applied, duplicate or ignored           -> ack
- PoisonMessage (not JSON, unknown version, connection gone) -> dead-letter with its reason, then ack
- StoreUnavailable (Redis away)            -> hold the message and retry until Redis is back
- anything unexpected                      -> requeue; the queue's delivery limit dead-letters it
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from services.verifier.acks import BatchAcker
from services.verifier.batching import ApplyBatcher
from shared import broker, metrics
from shared.backoff import Backoff
from shared.broker import Topology
from shared.errors import PoisonMessage, StoreUnavailable
from shared.logs import Summary
from shared.models import DeliveryMessage, now_ms
from shared.runner import sleep_unless
from shared.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")


class Fate(enum.Enum):
    ACK = "ack"
    DEAD_LETTER = "dead_letter"
    REQUEUE = "requeue"


@dataclass(frozen=True, slots=True)
class Decision:
    fate: Fate
    reason: str = ""
    detail: str = ""


class Verifier:
    """Applies delivery messages to the store. Knows nothing of AMQP."""

    def __init__(self, store: Store, *, retry_max_s: float = 5.0, log_each_delivery: bool = False) -> None:
        self.store = store
        self.applier = ApplyBatcher(store)  # concurrent deliveries share one Redis round trip
        self.retry_max_s = retry_max_s
        self.stopping = asyncio.Event()
        self.log_each_delivery = log_each_delivery
        self.summary = Summary(log, "deliveries handled")  # one line a second, unless each is logged

    async def handle(self, body: bytes) -> Decision:
        consumed_at = now_ms()  # a test window's ``consumed`` hop
        try:
            msg = DeliveryMessage.from_bytes(body)
            return await self._apply(msg, consumed_at)
        except PoisonMessage as exc:
            return Decision(Fate.DEAD_LETTER, exc.reason, exc.message)
        except Exception:
            log.exception("unexpected error handling a delivery")
            return Decision(Fate.REQUEUE, "unexpected_error")

    async def _apply(self, msg: DeliveryMessage, consumed_at: int) -> Decision:
        result = await self._with_store_retry(lambda: self.applier.apply_delivery(msg, consumed_at))
        if result is None:
            return Decision(Fate.REQUEUE, "store_unavailable")
        if result.status == "missing":
            raise PoisonMessage("connection_missing", "the delivery's connection does not exist")
        metrics.child(metrics.DELIVERIES_CONSUMED, result.status).inc()
        if self.log_each_delivery:
            log.info("delivery handled", extra={
                "delivery_id": msg.delivery_id, "connection_id": msg.connection_id, "provider": msg.provider,
                "outcome": msg.outcome, "result": result.status,
            })
        else:
            self.summary.count(msg.outcome, result.status)
        if result.status == "applied":
            metrics.CONSUME_SECONDS.observe(max(0.0, (now_ms() - msg.received_at_ms) / 1000))
            if result.from_state != result.to_state:  # the store counted the transition
                log.info("state changed", extra={"delivery_id": msg.delivery_id, "from": result.from_state,
                                                  "to": result.to_state})
            if (result.from_state, result.to_state) == ("pending", "connected"):
                await self._observe_setup_time(msg)
        return Decision(Fate.ACK, result.status)

    async def _observe_setup_time(self, msg: DeliveryMessage) -> None:
        """The funnel: from the connection's creation to the verified event that connected it."""
        try:
            record = await self.store.get(msg.connection_id)
        except StoreUnavailable:
            return  # one lost sample is better than holding the message
        if record is not None and record.created_at_ms:
            metrics.SETUP_TO_CONNECTED.observe(max(0.0, (msg.received_at_ms - record.created_at_ms) / 1000))

    async def _with_store_retry(self, op: Callable[[], Awaitable[T]]) -> T | None:
        """Run ``op``; while Redis is away, hold on and retry with backoff. ``None`` when stopping."""
        retry = None  # made on the first failure only: a Backoff seeds its own random generator
        while True:
            try:
                return await op()
            except StoreUnavailable:
                if self.stopping.is_set():
                    return None
                retry = retry or Backoff(min(0.05, self.retry_max_s), self.retry_max_s)
                delay = retry.next_s()
                log.warning("redis unavailable; holding the delivery", extra={"retry_in_s": round(delay, 3)})
                await sleep_unless(self.stopping, delay)


class Consumer:
    """The thin AMQP loop around ``Verifier.handle``."""

    def __init__(self, verifier: Verifier, channel: AbstractChannel, topology: Topology) -> None:
        self.verifier = verifier
        self.channel = channel
        self.topology = topology
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._acks = BatchAcker()
        self.last_delivery_s = time.monotonic()  # when the broker last handed us a message

    @property
    def busy(self) -> bool:
        """Some message is being handled (for instance held while Redis is away)."""
        return bool(self._in_flight)

    async def start(self, prefetch: int) -> None:
        await self.channel.set_qos(prefetch_count=prefetch)
        await self.topology.declare(self.channel)
        # The queue object the robust channel registered when it declared it: consuming on that one
        # is what makes the channel consume again after a reconnect (ensure=False would not).
        self._queue = await self.channel.get_queue(self.topology.queue)
        self._tag = await self._queue.consume(self._on_message)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.last_delivery_s = time.monotonic()
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            decision = await self.verifier.handle(message.body)
            await self._settle(message, decision)
        except Exception as exc:
            if not broker.is_unreachable(exc):
                raise
            # The channel went away; the broker redelivers what we did not ack.
            log.warning("could not settle a message; the broker will redeliver it")
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def _settle(self, message: AbstractIncomingMessage, decision: Decision) -> None:
        if decision.fate is Fate.ACK:
            self._acks.ack(message)  # stored: acked with the next batch (see acks.py)
        elif decision.fate is Fate.REQUEUE:
            await message.nack(requeue=True)
            self._acks.settled(message)
        else:
            await self._dead_letter(message, decision)
            self._acks.settled(message)

    async def _dead_letter(self, message: AbstractIncomingMessage, decision: Decision) -> None:
        """Publish to the dead-letter exchange with our reason (confirmed), then ack the original."""
        exchange = await self.channel.get_exchange(self.topology.dead_exchange, ensure=False)
        await exchange.publish(
            aio_pika.Message(
                message.body,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message.message_id,
                headers={"x-dead-reason": decision.reason, "x-dead-detail": decision.detail[:200],
                         "x-dead-at-ms": now_ms()},
            ),
            routing_key="",
        )
        await message.ack()
        metrics.child(metrics.DEAD_LETTERED, decision.reason).inc()
        metrics.child(metrics.DELIVERIES_CONSUMED, "dead_lettered").inc()
        log.warning("message dead-lettered", extra={"delivery_id": message.message_id, "reason": decision.reason})

    async def stop(self, grace_s: float) -> None:
        """Stop taking messages, let in-flight ones finish (or return them), then return."""
        if self._queue is not None and self._tag is not None:
            try:
                await self._queue.cancel(self._tag)
            except Exception as exc:  # a broker already away has cancelled it for us
                if not broker.is_unreachable(exc):
                    raise
        started = time.monotonic()
        while self._in_flight and time.monotonic() - started < grace_s:
            await asyncio.sleep(0.02)
        self.verifier.stopping.set()
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=1.0)
        await self._acks.close()
        # Still not done (a Redis that hangs rather than fails): cancel, so shutdown stays bounded.
        # Their messages are unacked, so the broker hands them to the next verifier; a script that
        # did run is then recognised as a duplicate.
        for task in tuple(self._in_flight):
            task.cancel()
