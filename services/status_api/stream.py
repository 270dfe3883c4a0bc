"""Server-Sent Events: the live status of one connection, or of every connection of an account.

    Lua transition --PUBLISH changes--> ChangeHub (one pub/sub connection per process)
        --> per-stream bounded asyncio queues (indexed by account) --> the changed connection is
            read once (shared by every stream showing it) and each stream writes ``event: connection``
            with its full status object

Event ids are resume cursors: ``<first 12 hex of a connection id>.<version>`` for every connection the
stream has shown, joined by ``-``. A client that comes back with ``Last-Event-ID`` gets every connection
in scope whose version is above the cursor's (or that the cursor does not name), and nothing else. A
version only grows, so nothing that changed is missed, whichever replica serves the resume.

A stream whose queue fills (a reader that stopped reading) is ended, not the process; the browser comes
back with ``Last-Event-ID`` and misses nothing. After the pub/sub connection is re-established, every
stream re-reads its scope (notifications may have been lost meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiohttp import web

from services.status_api import analytics
from services.status_api import validation as v
from services.status_api.auth import Principal, require
from services.status_api.limits import STREAM_QUOTA
from services.status_api.views import CONNECTIONS, visible
from shared import metrics
from shared.changes import follow_changes
from shared.errors import ApiError, NotFound, StoreUnavailable
from shared.models import connection_view, display_of, health_of, now_ms
from shared.store import Store

log = logging.getLogger(__name__)
RETRY_MS = 2000  # how soon a browser reconnects after the stream ends
SUBSCRIBE_WAIT_S = 5.0
ID_CHARS = 12
READ_SHARE_S = 1.0  # how long one read of a changed connection serves streams that wake late


class Signal(enum.Enum):
    RESYNC = "resync"  # notifications may have been lost: re-read the whole scope
    CLOSE = "close"  # the process is shutting down
    DROPPED = "dropped"  # the stream fell behind


@dataclass(frozen=True, slots=True)
class Change:
    id: str
    account_id: str
    version: int


class Listener:
    """One stream's inbox. ``connection_id`` None means every connection of the account."""

    def __init__(self, account_id: str, connection_id: str | None, size: int) -> None:
        self.account_id = account_id
        self.connection_id = connection_id
        self.queue: asyncio.Queue[Change | Signal] = asyncio.Queue(size)

    def offer(self, item: Change | Signal) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            metrics.SSE_DROPPED.inc()
            self.interrupt(Signal.DROPPED)

    def interrupt(self, signal: Signal) -> None:
        """Replace whatever is queued with ``signal`` (it must get through even to a full queue)."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(signal)


class ChangeHub:
    """Reads the changes channel on one pub/sub connection and fans out to listeners in-process."""

    def __init__(self, client: aioredis.Redis, channel: str, queue_size: int) -> None:
        self._redis = client
        self._channel = channel
        self._queue_size = queue_size
        self._by_account: dict[str, set[Listener]] = {}
        self.listeners: weakref.WeakSet[Listener] = weakref.WeakSet()  # every open stream
        self.closing = False
        self._reads: dict[tuple[str, int], asyncio.Future[dict[str, str] | None]] = {}

    def read(self, store: Store, change: Change) -> Awaitable[dict[str, str] | None]:
        """The changed connection, read once per change for all the streams that show it (not once
        per stream: a thousand streams on one account would otherwise be a thousand reads)."""
        key = (change.id, change.version)
        pending = self._reads.get(key)
        if pending is None:
            pending = self._reads[key] = asyncio.ensure_future(store.get(change.id))
            pending.add_done_callback(lambda done: self._settled(key, done))
        return asyncio.shield(pending)  # a stream that goes away must not cancel the others' read

    def _settled(self, key: tuple[str, int], done: asyncio.Future[dict[str, str] | None]) -> None:
        if not done.cancelled():
            done.exception()  # retrieved here, so a failure nobody waited for is not logged as lost
        # Keep the result a moment for streams that wake late, then let it go.
        asyncio.get_running_loop().call_later(READ_SHARE_S, self._reads.pop, key, None)

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
        for listener in tuple(self._by_account.get(change.account_id, ())):
            if listener.connection_id in (None, change.id):
                listener.offer(change)

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


HUB = web.AppKey("change_hub", ChangeHub)


async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
    store = app[CONNECTIONS].store
    hub = ChangeHub(store.redis, store.keys.changes, app[CONNECTIONS].settings.sse_queue_size)
    app[HUB] = hub
    subscribed = asyncio.Event()
    task = asyncio.create_task(hub.run(subscribed))
    # Streams read their snapshot after listening; wait for the subscription so none misses a change.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(subscribed.wait(), SUBSCRIBE_WAIT_S)
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def close_streams(app: web.Application) -> None:
    """``on_shutdown``: end every open stream now, so shutdown does not wait for them."""
    hub = app[HUB]
    hub.closing = True
    hub.broadcast(Signal.CLOSE)


# --- resume cursors -------------------------------------------------------------------------------


def encode_cursor(versions: dict[str, int]) -> str:
    """``<id prefix>.<version>`` per connection. Prefixes that collide are left out (so re-sent)."""
    by_prefix: dict[str, list[int]] = {}
    for cid, version in versions.items():
        by_prefix.setdefault(cid[:ID_CHARS], []).append(version)
    return "-".join(f"{p}.{vs[0]}" for p, vs in sorted(by_prefix.items()) if len(vs) == 1)


def decode_cursor(text: str | None) -> dict[str, int]:
    """The cursor's versions by id prefix; anything unreadable counts as unknown (so re-sent)."""
    known: dict[str, int] = {}
    for part in (text or "").strip().split("-"):
        prefix, _, version = part.partition(".")
        if len(prefix) == ID_CHARS and version.isdigit():
            known[prefix] = int(version)
    return known


# --- one stream -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    account_id: str
    connection_id: str | None = None  # None: the whole account


class EventStream:
    """Writes SSE frames to one response, remembering what it has shown (its cursor)."""

    def __init__(self, response: web.StreamResponse, write_timeout_s: float) -> None:
        self.response = response
        self.write_timeout_s = write_timeout_s
        self.shown: dict[str, int] = {}
        # When a shown connection's display changes by time alone (a deadline passes, it goes silent):
        # no change is published then, so the stream re-reads it at that moment.
        self.due: dict[str, int] = {}

    async def _write(self, frame: str) -> None:
        await asyncio.wait_for(self.response.write(frame.encode()), self.write_timeout_s)

    async def comment(self, text: str) -> None:
        await self._write(f": {text}\n\n")

    async def retry(self, ms: int) -> None:
        await self._write(f"retry: {ms}\n\n")

    async def event(self, name: str, data: Any) -> None:
        await self._write(f"event: {name}\ndata: {orjson.dumps(data).decode()}\n\n")

    def is_new(self, cid: str, version: int) -> bool:
        return version > self.shown.get(cid, 0)

    def watch(self, raw: dict[str, str]) -> None:
        at = _time_boundary(raw, now_ms())
        if at is None:
            self.due.pop(raw["id"], None)
        else:
            self.due[raw["id"]] = at

    async def connection(self, raw: dict[str, str]) -> dict[str, Any]:
        view = connection_view(raw)
        self.shown[view["id"]] = max(view["version"], self.shown.get(view["id"], 0))
        self.watch(raw)
        body = orjson.dumps(view).decode()
        await self._write(f"id: {encode_cursor(self.shown)}\nevent: connection\ndata: {body}\n\n")
        return view


def _time_boundary(raw: dict[str, str], now: int) -> int | None:
    """The next moment the connection's ``display`` changes without any stored change, if any."""
    at = None
    if raw.get("state") == "pending":
        at = int(raw.get("pending_deadline") or 0)
    elif raw.get("state") == "connected" and raw.get("expected_interval_s") and raw.get("last_event_at"):
        at = int(raw["last_event_at"]) + int(raw["expected_interval_s"]) * 1000 + 1
    return at if at is not None and at > now else None


def _shown_by_time(raw: dict[str, str], now: int) -> bool:
    """True when the display is not what the stored change implied (a client resuming may not know)."""
    display = display_of(raw, health_of(raw, now), now)
    return display == "silent" or (display == "failed" and raw.get("state") == "pending")


SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}


async def _load(request: web.Request, scope: Scope) -> list[dict[str, str]]:
    store = request.app[CONNECTIONS].store
    if scope.connection_id is not None:
        raw = await store.get(scope.connection_id)
        return [raw] if raw else []
    return await store.list_for_account(scope.account_id)


def _changed(rows: Iterable[dict[str, str]], known: dict[str, int], stream: EventStream) -> list[dict[str, str]]:
    """Rows the client has not seen at their version (or whose display has changed by time since);
    the ones it has are recorded as shown."""
    fresh, now = [], now_ms()
    for raw in rows:
        version = int(raw.get("version") or 0)
        seen = known.get(raw["id"][:ID_CHARS])
        if seen is not None and version <= seen and not _shown_by_time(raw, now):
            stream.shown[raw["id"]] = seen
            stream.watch(raw)
        elif stream.is_new(raw["id"], version) or seen is not None:
            fresh.append(raw)
    return fresh


async def _send_rows(stream: EventStream, rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [await stream.connection(raw) for raw in rows]


async def _on_change(request: web.Request, scope: Scope, stream: EventStream, change: Change) -> None:
    if not stream.is_new(change.id, change.version):
        return
    raw = await request.app[HUB].read(request.app[CONNECTIONS].store, change)
    if raw and raw["account_id"] == scope.account_id and stream.is_new(raw["id"], int(raw.get("version") or 0)):
        await stream.connection(raw)


async def _on_time(request: web.Request, stream: EventStream) -> bool:
    """Re-send the connections whose display just changed by time alone; False when none was due."""
    now = now_ms()
    due = [cid for cid, at in stream.due.items() if at <= now]
    for cid in due:
        del stream.due[cid]
        raw = await request.app[CONNECTIONS].store.get(cid)
        if raw:
            await stream.connection(raw)
    return bool(due)


def _wait_s(heartbeat_s: float, principal: Principal, stream: EventStream) -> float:
    moments = [m for m in (principal.expires_at_ms, min(stream.due.values(), default=None)) if m is not None]
    if not moments:
        return heartbeat_s
    return max(0.0, min(heartbeat_s, (min(moments) - now_ms()) / 1000))


async def _pump(request: web.Request, scope: Scope, stream: EventStream, listener: Listener) -> None:
    """Forward changes until the client leaves, the token expires, or the process shuts down."""
    principal = require(request)
    heartbeat_s = request.app[CONNECTIONS].settings.sse_heartbeat_s
    while True:
        try:
            item = await asyncio.wait_for(listener.queue.get(), _wait_s(heartbeat_s, principal, stream))
        except TimeoutError:
            if principal.expires_at_ms is not None and principal.expires_at_ms <= now_ms():
                await stream.event("token_expired", {"error": {
                    "code": "token_expired", "message": "the browser token has expired; reload with a new one"}})
                return
            if not await _on_time(request, stream):
                await stream.comment("heartbeat")
            continue
        if item is Signal.CLOSE or item is Signal.DROPPED:
            return
        if item is Signal.RESYNC:
            await _send_rows(stream, _changed(await _load(request, scope), {}, stream))
        else:
            await _on_change(request, scope, stream, item)


async def serve(request: web.Request, scope: Scope) -> web.StreamResponse:
    """Snapshot (or resume), then live changes. Errors before the first byte are ordinary 4xx/5xx."""
    hub = request.app[HUB]
    if hub.closing:
        raise ApiError("the service is shutting down; reconnect shortly", code="shutting_down", status=503)
    with request.app[STREAM_QUOTA].hold(require(request)):  # 429 too_many_streams over the limits
        return await _serve(request, scope, hub)


async def _serve(request: web.Request, scope: Scope, hub: ChangeHub) -> web.StreamResponse:
    listener = hub.listen(scope.account_id, scope.connection_id)  # before the snapshot: no gap
    try:
        last_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
        known = decode_cursor(last_id)
        response = web.StreamResponse(headers=SSE_HEADERS)
        stream = EventStream(response, request.app[CONNECTIONS].settings.sse_write_timeout_s)
        rows = _changed(await _load(request, scope), known, stream)
        await response.prepare(request)
        metrics.SSE_STREAMS.inc()
        try:
            await stream.retry(RETRY_MS)
            views = await _send_rows(stream, rows)
            await stream.event("ready", {"connections": len(stream.shown), "resumed": last_id is not None})
            if last_id is None:
                analytics.status_shown(request, views)
            await _pump(request, scope, stream, listener)
        except (ConnectionResetError, TimeoutError, StoreUnavailable) as exc:
            log.info("stream ended", extra={"why": type(exc).__name__})
        except Exception:  # headers are sent: no error response is possible, only an end
            log.exception("stream failed")
        finally:
            metrics.SSE_STREAMS.dec()
    finally:
        hub.forget(listener)
    return response


async def connection_stream(request: web.Request) -> web.StreamResponse:
    raw = await visible(request)
    return await serve(request, Scope(raw["account_id"], raw["id"]))


async def account_stream(request: web.Request) -> web.StreamResponse:
    account = v.account_id(request.match_info["account_id"])
    if not require(request).can_see(account):
        raise NotFound("no account has this id", code="account_not_found")
    return await serve(request, Scope(account))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/connections/{connection_id}/stream", connection_stream)
    app.router.add_get("/v1/accounts/{account_id}/stream", account_stream)
