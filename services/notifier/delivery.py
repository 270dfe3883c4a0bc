"""Fan-out and delivery, with no AMQP types: ``Notifier.fan_out`` turns one transition event into one
job per matching endpoint; ``Notifier.attempt`` makes one attempt of one job, logs it, and on failure
hands the job to the delay queue of its next attempt (or gives up, and may disable the endpoint).

Either publishes (confirmed) before its message is acked, so nothing is lost between the steps: a
notifier that dies mid-way repeats the step (at least once; the ``webhook-id`` stays the event's id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from services.notifier.config import Settings
from services.notifier.outbound import Outcome, Sender
from services.notifier.publisher import Publisher
from services.notifier.topology import ATTEMPT, NotifyTopology
from shared import metrics
from shared.errors import BrokerUnavailable, PoisonMessage, StoreUnavailable
from shared.models import iso, now_ms
from shared.notify_events import account_of
from shared.notify_store import Endpoint, NotifyStore
from shared.webhook_signing import signed_headers

log = logging.getLogger(__name__)
ENDPOINT_HEADER = "x-endpoint-id"
ATTEMPT_HEADER = "x-attempt"
HOLD_FIRST_S, HOLD_MAX_S = 0.1, 5.0  # while Redis or RabbitMQ is away, a held step is retried this often


@dataclass(frozen=True, slots=True)
class Job:
    event_id: str
    endpoint_id: str
    attempt: int
    body: bytes

    @property
    def kind(self) -> str:
        try:
            return str(orjson.loads(self.body).get("type", ""))
        except (orjson.JSONDecodeError, AttributeError):
            return ""


def parse_event(body: bytes) -> dict[str, Any]:
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PoisonMessage("not_json", "the event is not JSON") from exc
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise PoisonMessage("bad_shape", "the event has no type")
    return event


class Notifier:
    def __init__(self, store: NotifyStore, sender: Sender, publisher: Publisher, topology: NotifyTopology,
                 settings: Settings) -> None:
        self.store = store
        self.sender = sender
        self.publisher = publisher
        self.topology = topology
        self.settings = settings
        self.stopping = asyncio.Event()  # set on shutdown: stop holding steps, give messages back

    async def fan_out(self, event_id: str, body: bytes) -> int:
        event = parse_event(body)
        kind, account = event["type"], account_of(event)
        targets = [e for e in await self.store.endpoints_for(account) if e.wants(kind, account)]
        for endpoint in targets:
            await self.publisher.publish(self.topology.jobs_exchange, ATTEMPT, body, message_id=event_id,
                                         headers={ENDPOINT_HEADER: endpoint.id, ATTEMPT_HEADER: 1})
        log.info("notification fanned out", extra={"event_id": event_id, "type": kind, "endpoints": len(targets)})
        return len(targets)

    async def attempt(self, job: Job) -> None:
        raw = await self.store.get_endpoint(job.endpoint_id)
        if raw is None:
            return  # the endpoint was deleted: nothing to deliver to
        endpoint = Endpoint.from_raw(raw)
        now = now_ms()
        if endpoint.status != "enabled":
            metrics.NOTIFICATION_ATTEMPTS.labels("skipped_disabled").inc()
            await self._log(job, now, Outcome(False, error="endpoint_disabled"), None, "skipped")
            return
        headers = signed_headers(endpoint.secret, job.event_id, int(time.time()), job.body)
        outcome = await self.sender.post(endpoint.url, job.body, headers)
        metrics.NOTIFICATION_ATTEMPTS.labels(outcome.label).inc()
        # The POST is made: each step after it is held and retried on its own while Redis or RabbitMQ
        # is away, so that a server blinking now does not send the event again (nor repeat a step).
        if outcome.delivered:
            await self._held(lambda: self.store.delivered(endpoint.id))
            await self._held(lambda: self._log(job, now, outcome, None))
            return
        delays = self.settings.retry_delays_ms
        gave_up = job.attempt >= len(delays) + 1
        next_at = None
        if not gave_up:
            delay_ms = delays[job.attempt - 1]
            await self._held(lambda: self.publisher.publish(
                "", self.topology.retry_queue(delay_ms), job.body, message_id=job.event_id,
                headers={ENDPOINT_HEADER: endpoint.id, ATTEMPT_HEADER: job.attempt + 1}))
            next_at = now + delay_ms
        await self._held(lambda: self._maybe_disable(endpoint, now, gave_up))
        await self._held(lambda: self._log(job, now, outcome, next_at))  # last: once logged, the state is final

    async def _held(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step``; while Redis or RabbitMQ is away, wait and run it again (until shutdown, when the
        error goes up and the message goes back to its queue)."""
        delay_s = HOLD_FIRST_S
        while True:
            try:
                return await step()
            except (StoreUnavailable, BrokerUnavailable):
                if self.stopping.is_set():
                    raise
                log.warning("notification step held: a server is away", extra={"retry_in_s": delay_s})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay_s)
                delay_s = min(delay_s * 2, HOLD_MAX_S)

    async def _maybe_disable(self, endpoint: Endpoint, now: int, gave_up: bool) -> None:
        failed_events, since = await self.store.attempt_failed(endpoint.id, now, gave_up)
        settings = self.settings
        reason = None
        if failed_events >= settings.notifier_disable_after_failures:
            reason = f"{failed_events} events in a row failed every attempt"
        elif now - since >= settings.notifier_disable_after_s * 1000:
            reason = f"every attempt failed for {(now - since) // 1000} s"
        if reason:
            await self.store.disable(endpoint.id, reason, now)
            log.warning("notification endpoint disabled", extra={"endpoint_id": endpoint.id, "reason": reason})

    async def _log(self, job: Job, now: int, outcome: Outcome, next_at: int | None, word: str | None = None) -> None:
        entry = {
            "event_id": job.event_id,
            "type": job.kind,
            "attempt": job.attempt,
            "at": iso(now),
            "outcome": word or ("delivered" if outcome.delivered else "failed"),
            "status": outcome.status,
            "error": outcome.error,
            "next_retry_at": iso(next_at),
        }
        await self.store.log_attempt(job.endpoint_id, entry)
        log.info("notification attempt", extra={"endpoint_id": job.endpoint_id, **{
            k: v for k, v in entry.items() if k in ("event_id", "attempt", "outcome", "status", "error")}})
