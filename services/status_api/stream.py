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
import bisect
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from services.status_api import analytics
from services.status_api import validation as v
from services.status_api.access import visible
from services.status_api.auth import PRINCIPAL, Principal, require
from services.status_api.hub import Change, ChangeHub, Listener, Rendered, Signal
from services.status_api.presentation import connection_view, display_of, health_of, view_valid_until
from services.status_api.state import API, api
from shared import metrics
from shared.errors import ApiError, NotFound, StoreUnavailable
from shared.models import now_ms
from shared.records import ConnectionRecord

log = logging.getLogger(__name__)
RETRY_MS = 2000  # how soon a browser reconnects after the stream ends
ID_CHARS = 12


async def close_streams(app: web.Application) -> None:
    """``on_shutdown``: end every open stream now, so shutdown does not wait for them."""
    hub = app[API].hub
    hub.closing = True
    hub.broadcast(Signal.CLOSE)


# --- resume cursors -------------------------------------------------------------------------------


def encode_cursor(versions: dict[str, int]) -> str:
    """``<id prefix>.<version>`` per connection. Prefixes that collide are left out (so re-sent)."""
    by_prefix: dict[str, list[int]] = {}
    for cid, version in versions.items():
        by_prefix.setdefault(cid[:ID_CHARS], []).append(version)
    return "-".join(f"{p}.{vs[0]}" for p, vs in sorted(by_prefix.items()) if len(vs) == 1)


class Cursor:
    """``encode_cursor`` of a stream's shown versions, kept encoded as they change: a frame's id costs
    one join of the parts, not a sort and a format of every connection the stream has shown."""

    def __init__(self) -> None:
        self._owner: dict[str, str | None] = {}  # prefix -> the one id shown with it; None: ids collide
        self._parts: dict[str, str] = {}  # prefix -> "<prefix>.<version>", for the prefixes that do not
        self._order: list[str] = []  # those prefixes, sorted
        self._text: str | None = ""
        self._bytes = b""  # ``_text`` encoded

    def note(self, cid: str, version: int) -> None:
        prefix = cid[:ID_CHARS]
        owner = self._owner.setdefault(prefix, cid)
        if owner == cid:
            if prefix not in self._parts:
                bisect.insort(self._order, prefix)
            self._parts[prefix] = f"{prefix}.{version}"
        elif owner is not None:  # a second id with this prefix: left out from now on (so re-sent)
            self._owner[prefix] = None
            del self._parts[prefix]
            self._order.remove(prefix)
        self._text = None

    def text(self) -> str:
        if self._text is None:
            self._text = "-".join(map(self._parts.__getitem__, self._order))
            self._bytes = self._text.encode()
        return self._text

    def encoded(self) -> bytes:
        if self._text is None:
            self.text()
        return self._bytes


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

    def __init__(self, response: web.StreamResponse, write_timeout_s: float,
                 transport: asyncio.WriteTransport | None = None) -> None:
        self.response = response
        self.write_timeout_s = write_timeout_s
        self.transport = transport  # the client's socket; None: every write is bounded by the timeout
        self.shown: dict[str, int] = {}
        self.cursor = Cursor()  # ``encode_cursor(self.shown)``, kept as ``shown`` changes (``mark``)
        # When a shown connection's display changes by time alone (a deadline passes, it goes silent):
        # no change is published then, so the stream re-reads it at that moment.
        self.due: dict[str, int] = {}

    async def _write(self, frame: str) -> None:
        await self._write_bytes(frame.encode())

    async def _write_bytes(self, data: bytes) -> None:
        if self._cannot_wait(len(data)):
            await self.response.write(data)
            return
        async with asyncio.timeout(self.write_timeout_s):  # not wait_for: no task per frame per stream
            await self.response.write(data)

    def _cannot_wait(self, size: int) -> bool:
        """True when the socket takes ``size`` more bytes without pausing the writer: a write waits only
        for a paused writer (a client reading slower than we write), so this one needs no timeout (a
        timer per frame per stream was a good part of a frame's CPU). Paused writers resume only at or
        below the low-water mark, so below it none is paused."""
        transport = self.transport
        if transport is None:
            return False
        buffered = transport.get_write_buffer_size()
        low, high = transport.get_write_buffer_limits()
        return buffered <= low and buffered + size <= high

    async def comment(self, text: str) -> None:
        await self._write(f": {text}\n\n")

    async def retry(self, ms: int) -> None:
        await self._write(f"retry: {ms}\n\n")

    async def event(self, name: str, data: Any) -> None:
        await self._write(f"event: {name}\ndata: {orjson.dumps(data).decode()}\n\n")

    def is_new(self, cid: str, version: int) -> bool:
        return version > self.shown.get(cid, 0)

    def mark(self, cid: str, version: int) -> None:
        """Record ``version`` of ``cid`` as shown (its cursor with it)."""
        self.shown[cid] = version
        self.cursor.note(cid, version)

    def watch(self, record: ConnectionRecord, now: int | None = None) -> None:
        at = _time_boundary(record, now_ms() if now is None else now)
        if at is None:
            self.due.pop(record.id, None)
        else:
            self.due[record.id] = at

    async def connection(self, record: ConnectionRecord,
                         shared: dict[tuple[str, int], Rendered] | None = None) -> dict[str, Any]:
        """Send the connection's status as it is now; ``shared`` (the hub's): rendered once per change
        for every stream that shows it, not once per stream, and again when a stream sends it after
        the rendering stopped being true (a deadline passed, silence began: the stream's own now)."""
        now = now_ms()
        key = (record.id, record.version)
        rendered = shared.get(key) if shared is not None else None
        if rendered is None or not rendered.holds_at(now):
            view = connection_view(record, now)
            rendered = Rendered(view, orjson.dumps(view), now, view_valid_until(record, now))
            if shared is not None:
                shared[key] = rendered
        self.mark(record.id, max(record.version, self.shown.get(record.id, 0)))
        self.watch(record, now)  # the same now as what is sent: its next time boundary is after it
        await self._write_bytes(b"".join((b"id: ", self.cursor.encoded(), b"\nevent: connection\ndata: ",
                                          rendered.body, b"\n\n")))
        return rendered.view


def _time_boundary(record: ConnectionRecord, now: int) -> int | None:
    """The next moment the connection's ``display`` changes without any stored change, if any."""
    at = None
    if record.state == "pending":
        at = record.pending_deadline_ms
    elif record.state == "connected" and record.quiet_limit_ms and record.last_event_at_ms:
        at = record.last_event_at_ms + record.quiet_limit_ms + 1
    return at if at is not None and at > now else None


def _shown_by_time(record: ConnectionRecord, now: int) -> bool:
    """True when the display is not what the stored change implied (a client resuming may not know)."""
    display = display_of(record, health_of(record, now), now)
    return display == "silent" or (display == "failed" and record.state == "pending")


SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}


async def _load(request: web.Request, scope: Scope) -> list[ConnectionRecord]:
    store = api(request).reads
    if scope.connection_id is not None:
        record = await store.get(scope.connection_id, opened=False)
        return [record] if record else []
    return await store.list_for_account(scope.account_id, opened=False)


def _changed(
    records: Iterable[ConnectionRecord], known: dict[str, int], stream: EventStream
) -> list[ConnectionRecord]:
    """Connections the client has not seen at their version (or whose display has changed by time
    since); the ones it has are recorded as shown."""
    fresh, now = [], now_ms()
    for record in records:
        seen = known.get(record.id[:ID_CHARS])
        if seen is not None and record.version <= seen and not _shown_by_time(record, now):
            stream.mark(record.id, seen)
            stream.watch(record)
        elif stream.is_new(record.id, record.version) or seen is not None:
            fresh.append(record)
    return fresh


async def _send_rows(stream: EventStream, records: list[ConnectionRecord]) -> list[dict[str, Any]]:
    return [await stream.connection(record) for record in records]


async def _on_change(request: web.Request, scope: Scope, stream: EventStream, change: Change) -> None:
    if not stream.is_new(change.id, change.version):
        return
    state = api(request)
    record = await state.hub.read(state.reads, change)
    if record and record.account_id == scope.account_id and stream.is_new(record.id, record.version):
        await stream.connection(record, state.hub.rendered)


async def _on_time(request: web.Request, stream: EventStream) -> bool:
    """Re-send the connections whose display just changed by time alone; False when none was due."""
    now = now_ms()
    due = [cid for cid, at in stream.due.items() if at <= now]
    for cid in due:
        del stream.due[cid]
        record = await api(request).reads.get(cid, opened=False)
        if record:
            await stream.connection(record)
    return bool(due)


def _wait_s(heartbeat_s: float, principal: Principal, stream: EventStream) -> float:
    moments = [m for m in (principal.expires_at_ms, min(stream.due.values(), default=None)) if m is not None]
    if not moments:
        return heartbeat_s
    return max(0.0, min(heartbeat_s, (min(moments) - now_ms()) / 1000))


async def _pump(request: web.Request, scope: Scope, stream: EventStream, listener: Listener) -> None:
    """Forward changes until the client leaves, the token expires, or the process shuts down."""
    principal = require(request)
    heartbeat_s = api(request).settings.sse_heartbeat_s
    queue, loop = listener.queue, asyncio.get_running_loop()
    while True:
        waited = queue.empty()
        if waited:
            listener.wake_at(loop.time() + _wait_s(heartbeat_s, principal, stream))  # no timer per wait
            item = await queue.get()
        else:  # taken without waiting (the wait would not wait either)
            item = queue.get_nowait()
        if item is Signal.CLOSE or item is Signal.DROPPED:
            return
        # Checked for every item, not only when a wait runs out: a stream kept busy by changes must end
        # at its token's expiry all the same.
        if principal.expires_at_ms is not None and principal.expires_at_ms <= now_ms():
            await stream.event("token_expired", {"error": {
                "code": "token_expired", "message": "the browser token has expired; reload with a new one"}})
            return
        if item is Signal.TICK:  # the wait ran out, or it rang while this stream was busy
            if not await _on_time(request, stream) and waited:
                await stream.comment("heartbeat")
            continue
        if item is Signal.RESYNC:
            await _send_rows(stream, _changed(await _load(request, scope), {}, stream))
        else:
            await _on_change(request, scope, stream, item)


async def serve(request: web.Request, scope: Scope) -> web.StreamResponse:
    """Snapshot (or resume), then live changes. Errors before the first byte are ordinary 4xx/5xx."""
    state = api(request)
    hub = state.hub
    if hub.closing:
        raise ApiError("the service is shutting down; reconnect shortly", code="shutting_down", status=503)
    with state.stream_quota.hold(require(request)):  # 429 too_many_streams over the limits
        return await _serve(request, scope, hub)


async def _serve(request: web.Request, scope: Scope, hub: ChangeHub) -> web.StreamResponse:
    listener = hub.listen(scope.account_id, scope.connection_id)  # before the snapshot: no gap
    try:
        last_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
        known = decode_cursor(last_id)
        response = web.StreamResponse(headers=SSE_HEADERS)
        stream = EventStream(response, api(request).settings.sse_write_timeout_s, request.transport)
        rows = _changed(await _load(request, scope), known, stream)
        await response.prepare(request)
        metrics.SSE_STREAMS.inc()
        try:
            await stream.retry(RETRY_MS)
            views = await _send_rows(stream, rows)
            await stream.event("ready", {"connections": len(stream.shown), "resumed": last_id is not None})
            if last_id is None:
                analytics.status_shown(api(request).analytics, request.get(PRINCIPAL), views)
            try:
                await _pump(request, scope, stream, listener)
            finally:
                listener.stop_alarm()
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
    record = await visible(request, opened=False)
    return await serve(request, Scope(record.account_id, record.id))


async def account_stream(request: web.Request) -> web.StreamResponse:
    account = v.account_id(request.match_info["account_id"])
    if not require(request).can_see(account):
        raise NotFound("no account has this id", code="account_not_found")
    return await serve(request, Scope(account))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/connections/{connection_id}/stream", connection_stream)
    app.router.add_get("/v1/accounts/{account_id}/stream", account_stream)
