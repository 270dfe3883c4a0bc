"""Move dead-lettered deliveries back to the deliveries queue, after the cause is fixed.

A long Redis outage with verifier restarts can return valid deliveries to the queue often enough that
RabbitMQ dead-letters them (``x-delivery-limit``); once Redis is back they only need to be processed
again, and processing is idempotent. Uses ``AMQP_URL`` and ``AMQP_PREFIX`` like the services:

    .venv/bin/python -m scripts.redrive_dead_letters            # what RabbitMQ dead-lettered
    .venv/bin/python -m scripts.redrive_dead_letters --reason unknown_version   # ...and these too
    .venv/bin/python -m scripts.redrive_dead_letters --all      # everything
    make redrive

By default it moves the deliveries RabbitMQ dead-lettered (over the delivery limit, or rejected)
and leaves those a verifier dead-lettered on purpose (header ``x-dead-reason``: a message it can never
process, e.g. ``not_json``); ``--reason`` adds a reason, ``--all`` moves every one. It prints how many
it moved and how many it left, by reason.

Nothing is lost if it stops midway: each message is published to the deliveries exchange and confirmed
by the broker before it is acked (removed) from the dead-letter queue. Stopped between the two, the
message is in both queues, and the verifier recognises the second copy as a duplicate. Messages it
leaves are returned to the dead-letter queue unchanged. It handles at most the messages that were in
the dead-letter queue when it started (so a steady trickle of new dead letters cannot keep it going).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from pamqp.commands import Basic

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shared.broker import AMQP_ERRORS, ROUTING_KEY, Topology, amqp_connection  # noqa: E402
from shared.config import CommonSettings  # noqa: E402
from shared.errors import BrokerUnavailable  # noqa: E402
from shared.models import now_ms  # noqa: E402

# Headers that describe an earlier death; a re-driven message starts afresh without them.
DEATH_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
                 "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason", "x-delivery-count",
                 "x-dead-reason", "x-dead-detail", "x-dead-at-ms")


PUBLISH_FAILURES: tuple[type[BaseException], ...] = (*AMQP_ERRORS, BrokerUnavailable)


@dataclass
class Redriven:
    moved: int = 0
    left: Counter[str] = field(default_factory=Counter)  # reason -> messages left in the dead-letter queue

    def summary(self, topology: Topology) -> str:
        left = ", ".join(f"{reason}={n}" for reason, n in sorted(self.left.items())) or "none"
        return (f"moved {self.moved} dead-lettered deliveries to {topology.queue}; "
                f"left {sum(self.left.values())} in {topology.dead_queue} ({left})")


class Stopped(Exception):
    """The broker did not confirm a publish: nothing more is moved (what was moved stays moved)."""

    def __init__(self, result: Redriven, why: str) -> None:
        super().__init__(why)
        self.result = result
        self.why = why


def reason_of(message: AbstractIncomingMessage) -> str:
    """Why it died: the verifier's ``x-dead-reason``, else RabbitMQ's (``delivery_limit``, ``rejected``…)."""
    headers = message.headers or {}
    for name in ("x-dead-reason", "x-first-death-reason"):
        value = headers.get(name)
        if value:
            return value.decode() if isinstance(value, bytes) else str(value)
    return "unknown"


def should_move(message: AbstractIncomingMessage, reasons: frozenset[str], move_all: bool) -> bool:
    if move_all or "x-dead-reason" not in (message.headers or {}):
        return True
    return reason_of(message) in reasons


def _fresh(message: AbstractIncomingMessage) -> aio_pika.Message:
    headers: dict[str, Any] = {k: v for k, v in (message.headers or {}).items() if k not in DEATH_HEADERS}
    headers["x-redriven-at-ms"] = now_ms()
    return aio_pika.Message(
        message.body,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        content_type=message.content_type or "application/json",
        message_id=message.message_id,
        headers=headers,
    )


async def _publish_confirmed(channel: AbstractChannel, topology: Topology, message: aio_pika.Message) -> None:
    exchange = await channel.get_exchange(topology.exchange, ensure=False)
    confirm = await exchange.publish(message, ROUTING_KEY, mandatory=True, timeout=10)
    if not isinstance(confirm, Basic.Ack):
        raise BrokerUnavailable(f"the broker did not confirm a re-driven delivery: {type(confirm).__name__}")


async def redrive(
    connection: AbstractRobustConnection, topology: Topology, *, reasons: frozenset[str] = frozenset(),
    move_all: bool = False, limit: int | None = None,
) -> Redriven:
    """Move what should move (confirmed, then acked); return the others to the dead-letter queue."""
    result = Redriven()
    channel = await connection.channel(publisher_confirms=True)
    try:
        await topology.declare(channel)
        dead = await channel.declare_queue(topology.dead_queue, passive=True)
        waiting = dead.declaration_result.message_count or 0
        budget = waiting if limit is None else min(waiting, limit)
        kept: list[AbstractIncomingMessage] = []
        try:
            for _ in range(budget):
                message = await dead.get(no_ack=False, fail=False, timeout=10)
                if message is None:
                    break
                if should_move(message, reasons, move_all):
                    try:
                        await _publish_confirmed(channel, topology, _fresh(message))
                    except PUBLISH_FAILURES as exc:
                        raise Stopped(result, f"{type(exc).__name__}: {exc}") from exc
                    await message.ack()
                    result.moved += 1
                else:
                    kept.append(message)  # held unacked, so the loop does not meet it again
                    result.left[reason_of(message)] += 1
        finally:
            with contextlib.suppress(*AMQP_ERRORS):  # a closed channel returns them by itself
                for message in kept:
                    await message.nack(requeue=True)
    finally:
        with contextlib.suppress(*AMQP_ERRORS):
            await channel.close()
    return result


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.redrive_dead_letters",
                                     description="Move dead-lettered deliveries back to the deliveries queue.")
    parser.add_argument("--reason", action="append", default=[],
                        help="also move the ones a verifier dead-lettered for this x-dead-reason (repeatable)")
    parser.add_argument("--all", action="store_true", help="move every dead-lettered delivery")
    parser.add_argument("--limit", type=int, default=None, help="move at most this many")
    return parser.parse_args(argv)


async def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    settings = CommonSettings.from_env()
    topology = Topology(settings.amqp_prefix, settings.analytics_exchange)
    try:
        async with amqp_connection(settings.amqp_url, "redrive_dead_letters") as connection:
            result = await redrive(connection, topology, reasons=frozenset(args.reason), move_all=args.all,
                                   limit=args.limit)
    except Stopped as stopped:
        print(f"stopped ({stopped.why}): {stopped.result.summary(topology)}; run it again", file=sys.stderr)
        return 1
    except BrokerUnavailable as exc:
        print(f"RabbitMQ is not reachable at AMQP_URL: {exc}", file=sys.stderr)
        return 1
    print(result.summary(topology))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
