"""The change hub: one pub/sub subscription per process, fanned out to every open stream in-process.

    Lua transition --PUBLISH changes--> ChangeHub --> per-stream bounded asyncio queues (by account)

A changed connection is read once, however many streams show it. A stream whose queue fills (a reader
that stopped reading) is sent ``DROPPED`` and ends, not the process. After the subscription is
re-established, every stream is sent ``RESYNC`` (notifications may have been lost meanwhile).

A change that stored a test window's delivery says so (``test_hop``): the hub records when it fanned it
out, the test's ``pushed`` hop (once, whichever process is first; docs/API.md, "Test events").
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from shared import metrics
from shared.changes import follow_changes
from shared.coalesce import TurnReads
from shared.errors import StoreUnavailable
from shared.models import now_ms
from shared.records import ConnectionRecord
from shared.store import Store

log = logging.getLogger(__name__)
SUBSCRIBE_WAIT_S = 5.0
READ_SHARE_S = 1.0  # how long one read of a changed connection serves streams that wake late


class Signal(enum.Enum):
    RESYNC = "resync"  # notifications may have been lost: re-read the whole scope
    CLOSE = "close"  # the process is shutting down
    DROPPED = "dropped"  # the stream fell behind
    TICK = "tick"  # the stream's wait has run out (``Listener.wake_at``)


@dataclass(frozen=True, slots=True)
class Change:
    id: str
    account_id: str
    version: int


@dataclass(frozen=True, slots=True)
class Rendered:
    """A connection's status object and its JSON, as true from ``at`` until ``until`` (None: until the
    connection changes): the time-derived parts (a passed deadline, silence) hold only that long."""

    view: dict[str, Any]
    body: bytes  # the JSON, as sent (encoded once)
    at: int
    until: int | None

    def holds_at(self, now: int) -> bool:
        return self.at <= now and (self.until is None or now < self.until)


class Listener:
    """One stream's inbox. ``connection_id`` None means every connection of the account."""

    def __init__(self, account_id: str, connection_id: str | None, size: int) -> None:
        self.account_id = account_id
        self.connection_id = connection_id
        self.queue: asyncio.Queue[Change | Signal] = asyncio.Queue(size)
        self.wake_deadline = 0.0  # when the stream's current wait runs out (loop time)
        self._alarm: asyncio.TimerHandle | None = None
        self._alarm_at = 0.0

    def offer(self, item: Change | Signal) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            metrics.SSE_DROPPED.inc()
            self.interrupt(Signal.DROPPED)

    def wake_at(self, deadline: float) -> None:
        """Queue ``Signal.TICK`` at ``deadline`` (loop time) if nothing is queued by then. One timer
        serves many waits: it is moved only when it would ring too late, and when it rings early (the
        wait it was set for ended with an item) it is set again for the wait then current, so a
        stream that waits once per change does not make and cancel a timer per change."""
        self.wake_deadline = deadline
        if self._alarm is None or self._alarm_at > deadline:
            self.stop_alarm()
            self._arm(deadline)

    def _arm(self, at: float) -> None:
        self._alarm_at = at
        self._alarm = asyncio.get_running_loop().call_at(at, self._ring)

    def _ring(self) -> None:
        self._alarm = None
        if asyncio.get_running_loop().time() < self.wake_deadline:
            self._arm(self.wake_deadline)
        elif self.queue.empty():  # only a stream with nothing queued can be waiting
            self.queue.put_nowait(Signal.TICK)

    def stop_alarm(self) -> None:
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None

    def interrupt(self, signal: Signal) -> None:
        """Replace whatever is queued with ``signal`` (it must get through even to a full queue)."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(signal)


class ChangeHub:
    """Reads the changes channel on one pub/sub connection and fans out to listeners in-process."""

    def __init__(self, client: aioredis.Redis, channel: str | tuple[str, ...], queue_size: int,
                 on_test_hop: Callable[[Change, str, str, int], None] | None = None) -> None:
        self._redis = client
        self._on_test_hop = on_test_hop  # (change, test id, delivery id, pushed at ms)
        self._channel = channel
        self._queue_size = queue_size
        self._by_account: dict[str, set[Listener]] = {}
        self.listeners: weakref.WeakSet[Listener] = weakref.WeakSet()  # every open stream
        self.closing = False
        self._reads: dict[tuple[str, int], asyncio.Future[ConnectionRecord | None]] = {}
        self._kept: collections.deque[tuple[float, tuple[str, int]]] = collections.deque()  # (until, key)
        # The changed connections of one loop turn read in one pipeline (``shared/coalesce.py``), through
        # the store the streams read with (a process has one).
        self._turn_reads: tuple[Store, TurnReads[str, ConnectionRecord | None]] | None = None
        # The SSE frame body of a changed connection, rendered once for all the streams that show it
        # while it stays true (kept as long as its read; stream.py fills it).
        self.rendered: dict[tuple[str, int], Rendered] = {}

    def read(self, store: Store, change: Change) -> Awaitable[ConnectionRecord | None]:
        """The changed connection, read once per change for all the streams that show it (not once
        per stream: a thousand streams on one account would otherwise be a thousand reads). The read's
        future itself is shared (no task, no timer per change); each stream awaits it shielded, so one
        that goes away does not cancel the others' read."""
        key = (change.id, change.version)
        pending = self._reads.get(key)
        if pending is None:
            now = asyncio.get_running_loop().time()
            self._expire(now)
            pending = self._reads[key] = self._turn(store).ask(change.id)
            self._kept.append((now + READ_SHARE_S, key))
        return asyncio.shield(pending)

    def _expire(self, now: float) -> None:
        """Forget the reads (and renderings) kept longer than ``READ_SHARE_S``: the oldest first, as
        many as are due, when a new read is made (no timer per change)."""
        kept = self._kept
        while kept and kept[0][0] <= now:
            key = kept.popleft()[1]
            self._reads.pop(key, None)
            self.rendered.pop(key, None)

    def _turn(self, store: Store) -> TurnReads[str, ConnectionRecord | None]:
        kept = self._turn_reads
        if kept is None or kept[0] is not store:

            async def bulk(ids: list[str]) -> list[ConnectionRecord | None]:
                return await store.get_each(ids, opened=False)

            kept = self._turn_reads = (store, TurnReads(bulk))
        return kept[1]

    def listen(self, account_id: str, connection_id: str | None) -> Listener:
        listener = Listener(account_id, connection_id, self._queue_size)
        self._by_account.setdefault(account_id, set()).add(listener)
        self.listeners.add(listener)
        return listener

    def forget(self, listener: Listener) -> None:
        group = self._by_account.get(listener.account_id)
        if group is not None:
            group.discard(listener)
            if not group:
                del self._by_account[listener.account_id]
        self.listeners.discard(listener)

    def dispatch(self, data: str | bytes) -> None:
        try:
            note = orjson.loads(data)
            change = Change(str(note["id"]), str(note["account_id"]), int(note["version"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("ignored a malformed change notification")
            return
        group = self._by_account.get(change.account_id)
        if group:  # only this account's streams; the connection is read when one of them asks
            for listener in tuple(group):
                if listener.connection_id is None or listener.connection_id == change.id:
                    listener.offer(change)
        hop = note.get("test_hop")
        if self._on_test_hop is not None and isinstance(hop, dict):
            self._on_test_hop(change, str(hop.get("test", "")), str(hop.get("delivery", "")), now_ms())

    def broadcast(self, signal: Signal) -> None:
        for listener in tuple(self.listeners):
            if signal is Signal.CLOSE:
                listener.interrupt(signal)
            else:
                listener.offer(signal)

    async def run(self, subscribed: asyncio.Event) -> None:
        """Subscribe, and stay subscribed: on any Redis error, back off, re-subscribe and resync."""

        def on_subscribed() -> None:
            subscribed.set()
            self.broadcast(Signal.RESYNC)  # whatever happened while we were not subscribed

        await follow_changes(self._redis, self._channel, self.dispatch, on_subscribed=on_subscribed,
                             follower="stream hub")


@contextlib.asynccontextmanager
async def running_hub(store: Store, queue_size: int) -> AsyncIterator[ChangeHub]:
    """A hub following the changes channel for as long as the context lasts."""
    recording: set[asyncio.Task[None]] = set()

    async def record(change: Change, test_id: str, delivery_id: str, at: int) -> None:
        try:
            await store.record_test_hops(change.id, test_id, delivery_id, "", None, {"pushed": at})
        except StoreUnavailable:
            log.warning("could not record a test's pushed hop", extra={"connection_id": change.id})

    def on_test_hop(change: Change, test_id: str, delivery_id: str, at: int) -> None:
        if test_id and delivery_id:
            task = asyncio.create_task(record(change, test_id, delivery_id, at))
            recording.add(task)
            task.add_done_callback(recording.discard)

    hub = ChangeHub(store.redis, (store.keys.changes, store.keys.changes_quiet), queue_size, on_test_hop)
    subscribed = asyncio.Event()
    task = asyncio.create_task(hub.run(subscribed))
    # Streams read their snapshot after listening; wait for the subscription so none misses a change.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(subscribed.wait(), SUBSCRIBE_WAIT_S)
    try:
        yield hub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
