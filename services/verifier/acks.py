"""Batched acks: one ``basic.ack(multiple=True)`` frame for many messages, never one too early.

Acking each message is one frame (one write) per message, a good part of the verifier's CPU. A
multiple-ack acks *every* outstanding delivery tag up to the one named, so it is sent only for a run of
consecutive tags that are all settled: stored (ours to ack) or already settled one by one (a nack, a
dead-letter). A message whose effect is not stored yet stops the run, so it is never acked with the
others: "ack only after the effect is stored" holds.

Delivery tags are per channel and start again at 1 when the robust connection opens a new channel;
a message from a new channel starts a new run (what the old channel did not ack is redelivered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from shared.broker import AMQP_ERRORS

log = logging.getLogger(__name__)


class BatchAcker:
    def __init__(self, max_batch: int = 64, max_delay_s: float = 0.005) -> None:
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self._channel: Any = None  # the aiormq channel the tags below belong to
        self._acked_upto = 0  # every tag up to here is settled at the broker
        self._settled: dict[int, bool] = {}  # tag -> True: ours to ack; False: settled by itself
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None

    def _note(self, message: AbstractIncomingMessage, ours: bool) -> None:
        try:
            channel = message.channel
        except AMQP_ERRORS:
            return  # its channel is closed: the broker redelivers the message anyway
        if channel is not self._channel:  # a new channel: its tags start again at 1
            self._channel = channel
            self._acked_upto = 0
            self._settled.clear()
        if message.delivery_tag is not None:
            self._settled[message.delivery_tag] = ours
        if ours and len(self._settled) >= self.max_batch:
            self._flush_soon(0)
        elif self._timer is None:
            self._flush_soon(self.max_delay_s)

    def ack(self, message: AbstractIncomingMessage) -> None:
        """The message's effect is stored: ack it with the next batch."""
        self._note(message, True)

    def settled(self, message: AbstractIncomingMessage) -> None:
        """The message was settled on its own (nack or reject already sent): it no longer blocks a run."""
        self._note(message, False)

    def _flush_soon(self, delay_s: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._start_flush)

    def _start_flush(self) -> None:
        self._timer = None
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self.flush())

    def _run_end(self) -> int:
        """The highest tag of ours in the run of consecutive settled tags after ``_acked_upto``."""
        tag, ours = self._acked_upto, 0
        while tag + 1 in self._settled:
            tag += 1
            if self._settled.pop(tag):
                ours = tag
        self._acked_upto = tag
        return ours

    async def flush(self) -> None:
        """Ack the run that is complete now (once more if more completed meanwhile)."""
        channel, upto = self._channel, self._run_end()
        if not upto or channel is None:
            return
        try:
            await channel.basic_ack(delivery_tag=upto, multiple=True)
        except AMQP_ERRORS:
            # The channel went away; the broker redelivers whatever it did not get an ack for.
            log.warning("could not ack a batch; the broker will redeliver it")
        if self._settled and self._timer is None:
            self._flush_soon(self.max_delay_s)

    async def close(self) -> None:
        """Ack every complete run now (shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None:
            with contextlib.suppress(Exception):
                await self._flushing
        await self.flush()
