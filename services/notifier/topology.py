"""The notifier's RabbitMQ topology (``P`` = ``AMQP_PREFIX``):

    relay --(routing key = event type)--> P.transitions (topic) --#--> P.notifications (quorum)
                                                                           | fan-out: one job per endpoint
                                                                           v
    P.notify (direct) --attempt--> P.notify.attempts (quorum) --> POST to the endpoint
        ^                                  | failed: the job goes to the delay queue of its attempt
        |                                  v
        +--- dead-lettered at TTL --- P.notify.retry.<ms>ms (quorum, x-message-ttl)

A delay queue has no consumer: its messages wait out the queue's TTL and are dead-lettered (at least
once) back to ``P.notify``. Retries therefore survive a notifier restart. Messages that cannot be
processed at all go to ``P.notify.dead``. On a RabbitMQ cluster every queue gets the same number of
quorum members as the deliveries queue (``QUORUM_GROUP_SIZE``, by default the number of ``AMQP_URLS``).
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel

from services.notifier.config import Settings
from shared.broker import quorum_arguments

ATTEMPT = "attempt"
DELIVERY_LIMIT = 20


@dataclass(frozen=True, slots=True)
class NotifyTopology:
    prefix: str
    retry_delays_ms: tuple[int, ...]
    group_size: int = 0  # quorum queue members; 0 = the broker's default (every node of a small cluster)

    @classmethod
    def of(cls, settings: Settings) -> NotifyTopology:
        """What the notifier declares with ``settings``: its prefix, its delay queues, its quorum size."""
        return cls(settings.amqp_prefix, settings.retry_delays_ms, settings.quorum_members)

    @property
    def transitions(self) -> str:
        return f"{self.prefix}.transitions"

    @property
    def events_queue(self) -> str:
        return f"{self.prefix}.notifications"

    @property
    def jobs_exchange(self) -> str:
        return f"{self.prefix}.notify"

    @property
    def jobs_queue(self) -> str:
        return f"{self.prefix}.notify.attempts"

    @property
    def dead(self) -> str:
        return f"{self.prefix}.notify.dead"

    def retry_queue(self, delay_ms: int) -> str:
        return f"{self.prefix}.notify.retry.{delay_ms}ms"

    @property
    def queues(self) -> tuple[str, ...]:
        return (self.events_queue, self.jobs_queue, *map(self.retry_queue, self.retry_delays_ms), self.dead)

    async def declare(self, channel: AbstractChannel) -> None:
        """Declare everything (idempotent)."""
        dead = await channel.declare_exchange(self.dead, aio_pika.ExchangeType.FANOUT, durable=True)
        dead_q = await channel.declare_queue(self.dead, durable=True, arguments=quorum_arguments(self.group_size))
        await dead_q.bind(dead, routing_key="")
        work = quorum_arguments(self.group_size, **{"x-dead-letter-exchange": self.dead,
                                                    "x-delivery-limit": DELIVERY_LIMIT})
        transitions = await channel.declare_exchange(self.transitions, aio_pika.ExchangeType.TOPIC, durable=True)
        events = await channel.declare_queue(self.events_queue, durable=True, arguments=work)
        await events.bind(transitions, routing_key="#")
        jobs_exchange = await channel.declare_exchange(self.jobs_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
        jobs = await channel.declare_queue(self.jobs_queue, durable=True, arguments=work)
        await jobs.bind(jobs_exchange, routing_key=ATTEMPT)
        for delay_ms in self.retry_delays_ms:
            await channel.declare_queue(self.retry_queue(delay_ms), durable=True, arguments=quorum_arguments(
                self.group_size,
                **{
                    "x-message-ttl": delay_ms,
                    "x-dead-letter-exchange": self.jobs_exchange,
                    "x-dead-letter-routing-key": ATTEMPT,
                    "x-dead-letter-strategy": "at-least-once",  # dead-lettering confirmed by the target queue
                    "x-overflow": "reject-publish",  # what at-least-once dead-lettering requires
                },
            ))
