"""Product analytics events, published to RabbitMQ without ever slowing or failing a request.

    request --emit()--> bounded in-process queue --drain task, own channel--> topic exchange
                        (full: dropped and counted)                          (routing key = event name)

Every event is counted in Prometheus when it happens (``hookstatus_analytics_events_total{event}``),
whether or not it reaches the broker; the ones that do not are counted in
``hookstatus_analytics_dropped_total{event,reason}``. Look-ups an event needs (is there already a live
connection for this account and provider?) run in the background too. The schema is in
docs/ANALYTICS.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Coroutine, Iterable
from contextlib import asynccontextmanager
from typing import Any, cast

import aiormq
import orjson
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from aiormq import spec
from pamqp.commands import Basic

from services.status_api.auth import Principal
from services.status_api.config import Settings
from shared import metrics
from shared.broker import AMQP_ERRORS, PERSISTENT, is_unreachable, open_channel
from shared.errors import StoreUnavailable
from shared.models import iso, new_id, now_ms
from shared.records import ConnectionRecord
from shared.store import Store

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1
SETUP_COMPLETED = "integration_setup_completed"
RECONNECT_ATTEMPTED = "integration_reconnect_attempted"
STATUS_VIEWED = "integration_status_viewed"
LIVE_STATES = ("connected", "pending")
FLUSH_ON_CLOSE_S = 1.0
DRAIN_BATCH = 256  # events published together at most (their confirms awaited together)
VIEWS_KEPT = 50_000  # status views remembered to tell a repeated one (ANALYTICS_VIEW_REPEAT_S)
# What a person was shown, in the three segments the analytics events use.
STATUS_LABELS = {"connected": "connected", "pending": "pending", "failing": "error", "silent": "error",
                 "failed": "error"}


class Analytics:
    """The bounded queue, its drain task's channel, and the background look-ups."""

    def __init__(self, connection: AbstractRobustConnection, exchange: str, size: int, timeout_s: float,
                 view_repeat_s: float = 0) -> None:
        self._connection = connection
        self._view_repeat_s = view_repeat_s
        self._views: OrderedDict[tuple[str, str, str, str], float] = OrderedDict()  # view -> when counted
        self._exchange_name = exchange
        self._timeout_s = timeout_s
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(size)
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def emit(self, event: str, *, account_id: str, connection_id: str, provider: str, **fields: Any) -> None:
        """Count the event and queue it for publishing; never blocks, never raises."""
        metrics.child(metrics.ANALYTICS_EVENTS, event).inc()
        body = {
            "event": event,
            "event_id": new_id(),
            "schema_version": SCHEMA_VERSION,
            "occurred_at": iso(now_ms()),
            "account_id": account_id,
            "connection_id": connection_id,
            "provider": provider,
            **fields,
        }
        try:
            self._queue.put_nowait(body)
        except asyncio.QueueFull:
            metrics.ANALYTICS_DROPPED.labels(event, "queue_full").inc()

    def new_view(self, token_id: str, connection_id: str, display: str, via: str) -> bool:
        """False when this token was shown this connection with this display, by the same route, less than
        ``view_repeat_s`` ago (a page re-reading what it shows is not another view); the latest
        ``VIEWS_KEPT`` views are remembered, in this process."""
        if self._view_repeat_s <= 0:
            return True
        key, now = (token_id, connection_id, display, via), time.monotonic()
        counted = self._views.get(key)
        if counted is not None and now - counted < self._view_repeat_s:
            return False
        self._views[key] = now
        self._views.move_to_end(key)
        if len(self._views) > VIEWS_KEPT:
            self._views.popitem(last=False)
        return True

    def later(self, job: Coroutine[Any, Any, None]) -> None:
        """Run a look-up that leads to an event in the background (the request does not wait)."""
        task = asyncio.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain_forever(self) -> None:
        """Publish what is queued: everything waiting goes out together (up to ``DRAIN_BATCH``), each
        message written without waiting for the one before, then their confirms are awaited together.
        Under load the batches grow, so the cost per event falls (a busy page's reads each make one)."""
        while True:
            batch = [await self._queue.get()]
            while len(batch) < DRAIN_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                failures = await self._publish(batch)
            except Exception as exc:  # the drain must outlive any one batch: it is the only one
                failures = [exc] * len(batch)
            for body, failure in zip(batch, failures, strict=True):
                if failure is not None:
                    if not is_unreachable(failure):
                        log.error("analytics publish failed", exc_info=failure)
                    self._dropped(body, "broker_unavailable", failure)
                self._queue.task_done()

    def _dropped(self, body: dict[str, Any], reason: str, exc: BaseException) -> None:
        metrics.ANALYTICS_DROPPED.labels(body["event"], reason).inc()
        log.warning("analytics event dropped", extra={"event_name": body["event"], "error": type(exc).__name__})
        self._channel = self._exchange = None  # open a fresh channel for the next one

    async def _publish(self, batch: list[dict[str, Any]]) -> list[BaseException | None]:
        """Publish ``batch``; what went wrong with each message (None: the broker confirmed it)."""
        if self._connection.is_closed:
            raise ConnectionError("the broker connection is closed")
        exchange = await asyncio.wait_for(self._ready_exchange(), self._timeout_s)
        assert self._channel is not None
        # aiormq's own channel: its basic_publish takes ``wait`` (the abstract one does not say so), so
        # a message is handed to the writer without a lock and an event-loop turn each (as the
        # receiver's ConfirmedPublisher does). Not mandatory: who binds a queue is the consumers' choice.
        channel = cast(aiormq.Channel, await self._channel.get_underlay_channel())
        confirms = [
            channel.basic_publish(orjson.dumps(body), exchange=exchange.name, routing_key=body["event"],
                                  properties=spec.Basic.Properties(
                                      delivery_mode=PERSISTENT, content_type="application/json",
                                      message_id=body["event_id"], message_type=body["event"]),
                                  wait=False)
            for body in batch
        ]
        async with asyncio.timeout(self._timeout_s):
            results = await asyncio.gather(*confirms, return_exceptions=True)
        return [_failure(result) for result in results]

    async def _ready_exchange(self) -> AbstractExchange:
        channel = await open_channel(self._connection, self._channel)
        if self._exchange is None or channel is not self._channel:
            self._channel = channel
            # Declared (durable, topic) by the status API at start-up; only looked up here.
            self._exchange = await channel.get_exchange(self._exchange_name, ensure=False)
        return self._exchange

    async def close(self) -> None:
        for task in tuple(self._tasks):
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), FLUSH_ON_CLOSE_S)
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(*AMQP_ERRORS):
                await self._channel.close()


def _failure(result: object) -> BaseException | None:
    """None for the broker's Ack, else what went wrong (an error, or a Nack)."""
    if isinstance(result, BaseException):
        return result
    return None if isinstance(result, Basic.Ack) else ConnectionError(f"the broker refused: {type(result).__name__}")


@asynccontextmanager
async def running(connection: AbstractRobustConnection, settings: Settings) -> AsyncIterator[Analytics]:
    analytics = Analytics(connection, settings.analytics_exchange, settings.analytics_queue_size,
                          settings.publish_timeout_s, settings.analytics_view_repeat_s)
    drain = asyncio.create_task(analytics.drain_forever())
    try:
        yield analytics
    finally:
        await analytics.close()
        drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drain


# --- the three events -----------------------------------------------------------------------------


def setup_completed(analytics: Analytics, store: Store, view: dict[str, Any]) -> None:
    """A connection was created; if the account already had a live one for this provider, that
    is a reconnect attempt too."""
    analytics.emit(SETUP_COMPLETED, account_id=view["account_id"], connection_id=view["id"],
                   provider=view["provider"], state=view["state"])
    analytics.later(_reconnect_if_live(analytics, store, view["account_id"], view["provider"], view["id"],
                                       "create", None))


def reconnect_requested(analytics: Analytics, store: Store, before: ConnectionRecord, new_secret: bool) -> None:
    """A reconnect: an attempt when this connection (or a sibling of the provider) was live."""
    live_self = before if before.state in LIVE_STATES else None
    analytics.later(_reconnect_if_live(analytics, store, before.account_id, before.provider, before.id,
                                       "reconnect", live_self, new_secret=new_secret))


async def _reconnect_if_live(
    analytics: Analytics, store: Store, account_id: str, provider: str, connection_id: str, trigger: str,
    live: ConnectionRecord | None, **fields: Any,
) -> None:
    try:
        live = live or await _live_sibling(store, account_id, provider, connection_id)
    except StoreUnavailable:
        log.warning("reconnect analytics skipped: redis unavailable")
        return
    if live is None:
        return
    analytics.emit(RECONNECT_ATTEMPTED, account_id=account_id, connection_id=connection_id, provider=provider,
                   trigger=trigger, existing_connection_id=live.id, existing_state=live.state, **fields)


async def _live_sibling(store: Store, account_id: str, provider: str, exclude: str) -> ConnectionRecord | None:
    ids = [cid for cid in await store.account_connection_ids(account_id) if cid != exclude]
    for record in await store.get_many(ids, opened=False):  # state and provider only: nothing to decrypt
        if record.provider == provider and record.state in LIVE_STATES:
            return record
    return None


def status_shown(
    analytics: Analytics, principal: Principal | None, views: Iterable[dict[str, Any]], via: str = "stream"
) -> None:
    """Statuses a person was shown: counted for browser tokens only (the product backend's own reads
    are not views). Disconnected connections are not a post-setup status and are not counted, and the
    same status shown again to the same token soon after is the same view (``Analytics.new_view``)."""
    if principal is None or principal.kind != "browser":
        return
    for view in views:
        status = STATUS_LABELS.get(view["display"])
        if status is None or not analytics.new_view(principal.token_id or "", view["id"], view["display"], via):
            continue
        metrics.child(metrics.STATUS_VIEWED, status).inc()
        analytics.emit(STATUS_VIEWED, account_id=view["account_id"], connection_id=view["id"],
                       provider=view["provider"], status=status, display=view["display"], state=view["state"],
                       reason=view["reason"], via=via)
