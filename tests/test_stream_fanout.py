"""One change is read from Redis once, and its status object rendered once, however many streams show
it (the SSE fan-out's cost)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from services.status_api import hub as hub_module
from services.status_api import presentation
from services.status_api import stream as stream_module
from services.status_api.hub import Change, ChangeHub, Signal
from shared.records import ConnectionRecord
from shared.store import Store


class CountingStore:
    """Our own seam (``ChangeHub.read`` takes anything with ``get_each``) wrapping the real store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reads = 0  # round trips
        self.ids: list[str] = []  # connections read

    async def get_each(self, ids: list[str], *, opened: bool = True) -> list[ConnectionRecord | None]:
        self.reads += 1
        self.ids += ids
        return await self.store.get_each(ids, opened=opened)


async def test_many_streams_share_one_read_per_change(redis_client: aioredis.Redis, prefix: str) -> None:
    store = Store(redis_client, prefix)
    await redis_client.hset(store.keys.conn("c1"), mapping={"id": "c1", "account_id": "a", "state": "connected",
                                                                 "version": "3"})
    hub = ChangeHub(redis_client, store.keys.changes, 16)
    counting = CountingStore(store)
    change = Change("c1", "a", 3)
    rows = await asyncio.gather(*(hub.read(counting, change) for _ in range(500)))  # type: ignore[arg-type]
    assert counting.reads == 1
    assert all(row is not None and (row.id, row.account_id, row.version) == ("c1", "a", 3) for row in rows)
    assert len({id(row) for row in rows}) == 1  # one record, shared
    await hub.read(counting, Change("c1", "a", 4))  # a newer change is read again
    assert counting.reads == 2


async def test_the_changed_connections_of_one_loop_turn_are_read_in_one_round_trip(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    store = Store(redis_client, prefix)
    for n in range(20):
        await redis_client.hset(store.keys.conn(f"t{n}"), mapping={"id": f"t{n}", "account_id": f"acct-{n % 3}",
                                                                   "state": "connected", "version": str(n + 1)})
    hub = ChangeHub(redis_client, store.keys.changes, 16)
    counting = CountingStore(store)
    changes = [Change(f"t{n}", f"acct-{n % 3}", n + 1) for n in range(20)] + [Change("gone", "acct-0", 1)]
    rows = await asyncio.gather(*(hub.read(counting, change) for change in changes))  # type: ignore[arg-type]
    assert counting.reads == 1 and sorted(counting.ids) == sorted(c.id for c in changes)
    assert [(row.id, row.version) if row else None for row in rows] == [(f"t{n}", n + 1) for n in range(20)] + [None]


async def test_a_stream_going_away_does_not_cancel_the_shared_read(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    store = Store(redis_client, prefix)
    await redis_client.hset(store.keys.conn("c2"), mapping={"id": "c2", "account_id": "a", "state": "pending",
                                                                 "version": "1"})
    hub = ChangeHub(redis_client, store.keys.changes, 16)
    change = Change("c2", "a", 1)
    leaving = asyncio.ensure_future(hub.read(store, change))
    staying = hub.read(store, change)
    leaving.cancel()
    assert (await staying) is not None


async def test_a_read_is_shared_for_a_while_then_forgotten_with_its_rendering(
    redis_client: aioredis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream that wakes late still shares the read (and the rendering) of a change, for
    ``READ_SHARE_S``; after that both are let go (with no timer per change: the next read does it)."""
    monkeypatch.setattr(hub_module, "READ_SHARE_S", 0.2)
    store = Store(redis_client, prefix)
    for cid in ("k1", "k2"):
        await redis_client.hset(store.keys.conn(cid), mapping={"id": cid, "account_id": "a", "state": "connected",
                                                                "version": "2"})
    hub = ChangeHub(redis_client, store.keys.changes, 16)
    counting = CountingStore(store)
    record = await hub.read(counting, Change("k1", "a", 2))  # type: ignore[arg-type]
    assert record is not None
    await stream_module.EventStream(Sink(), 1.0).connection(record, hub.rendered)  # type: ignore[arg-type]
    assert await hub.read(counting, Change("k1", "a", 2)) is record  # type: ignore[arg-type]  # shared
    assert counting.reads == 1 and ("k1", 2) in hub.rendered
    await asyncio.sleep(0.25)
    await hub.read(counting, Change("k2", "a", 2))  # type: ignore[arg-type]  # a new read lets old ones go
    assert ("k1", 2) not in hub.rendered
    assert await hub.read(counting, Change("k1", "a", 2)) is not record  # type: ignore[arg-type]
    assert counting.reads == 3


class Sink:
    """Where an ``EventStream`` writes its frames (our seam: it only needs ``write``)."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.frames.append(data)


async def test_many_streams_share_one_rendering_per_change(
    redis_client: aioredis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(redis_client, prefix)
    await redis_client.hset(store.keys.conn("c3"), mapping={"id": "c3", "account_id": "a", "state": "connected",
                                                                 "version": "7"})
    hub = ChangeHub(redis_client, store.keys.changes, 16)
    made = []
    monkeypatch.setattr(stream_module, "connection_view", lambda record, now=None: made.append(record.id) or
                        presentation.connection_view(record, now))
    record = await hub.read(store, Change("c3", "a", 7))
    assert record is not None
    sinks = [Sink() for _ in range(300)]
    streams = [stream_module.EventStream(sink, 1.0) for sink in sinks]  # type: ignore[arg-type]
    await asyncio.gather(*(s.connection(record, hub.rendered) for s in streams))
    assert made == ["c3"]  # one status object for the 300 streams
    bodies = {sink.frames[0].split(b"\ndata: ", 1)[1] for sink in sinks}
    assert len(bodies) == 1 and b'"version":7' in bodies.pop()
    assert all(s.shown == {"c3": 7} for s in streams)
    await streams[0].connection(record)  # without the hub's share (a snapshot, a resync): rendered again
    assert made == ["c3", "c3"]


async def test_a_change_reaches_only_the_streams_that_show_it(redis_client: aioredis.Redis, prefix: str) -> None:
    """Offered to the streams of its account (the whole account, or that connection), to no other: a
    change no open stream shows is neither queued nor read."""
    hub = ChangeHub(redis_client, f"{prefix}:changes", 16)
    whole = hub.listen("a", None)
    this_one = hub.listen("a", "c1")
    other_one = hub.listen("a", "c2")
    other_account = hub.listen("b", None)
    hub.dispatch(orjson.dumps({"id": "c1", "account_id": "a", "version": 5, "state": "connected"}))
    hub.dispatch(orjson.dumps({"id": "c9", "account_id": "nobody", "version": 1, "state": "pending"}))
    assert whole.queue.get_nowait() == Change("c1", "a", 5) and whole.queue.empty()
    assert this_one.queue.get_nowait() == Change("c1", "a", 5)
    assert other_one.queue.empty() and other_account.queue.empty()
    hub.forget(whole)
    hub.broadcast(Signal.RESYNC)
    assert whole.queue.empty() and other_account.queue.get_nowait() is Signal.RESYNC


class Clock:
    """The time the stream and the presentation read (both read ``now_ms`` by name), moved by the test:
    where a boundary falls between two streams' sends is then decided, not left to the machine's load."""

    def __init__(self, at: int, monkeypatch: pytest.MonkeyPatch) -> None:
        self.at = at
        monkeypatch.setattr(stream_module, "now_ms", lambda: self.at)
        monkeypatch.setattr(presentation, "now_ms", lambda: self.at)


def _sent(sink: Sink) -> dict[str, Any]:
    return orjson.loads(sink.frames[-1].split(b"\ndata: ", 1)[1])  # type: ignore[no-any-return]


async def test_a_stream_sending_after_a_deadline_passed_shows_it_passed(
    redis_client: aioredis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One change, rendered for a first stream just before the connection's pending deadline, is not
    what a second stream sends just after it: that one shows ``failed`` (and a third one, later still,
    shares the second's rendering)."""
    t0 = 1_800_000_000_000
    clock = Clock(t0, monkeypatch)
    store = Store(redis_client, prefix)
    await redis_client.hset(store.keys.conn("c4"), mapping={
        "id": "c4", "account_id": "a", "provider": "stripe", "state": "pending", "version": "2",
        "pending_deadline": str(t0 + 50)})
    hub = ChangeHub(redis_client, store.keys.changes, 16)
    record = await hub.read(store, Change("c4", "a", 2))
    assert record is not None
    made = []
    monkeypatch.setattr(stream_module, "connection_view", lambda record, now=None: made.append(now) or
                        presentation.connection_view(record, now))
    early, late, later = Sink(), Sink(), Sink()
    first = stream_module.EventStream(early, 1.0)  # type: ignore[arg-type]
    await first.connection(record, hub.rendered)
    assert _sent(early)["display"] == "pending"
    assert first.due == {"c4": t0 + 50}  # it will re-send at the deadline

    clock.at = t0 + 50  # the deadline passes between the two streams' sends
    second = stream_module.EventStream(late, 1.0)  # type: ignore[arg-type]
    await second.connection(record, hub.rendered)
    assert _sent(late)["display"] == "failed"
    assert _sent(late)["cta"] == presentation.connection_view(record, t0 + 50)["cta"]
    assert second.due == {}  # nothing more will change by time alone

    clock.at = t0 + 60
    await stream_module.EventStream(later, 1.0).connection(record, hub.rendered)  # type: ignore[arg-type]
    assert _sent(later) == _sent(late)
    assert len(made) == 2  # rendered once before the deadline, once after, not once per stream


async def test_a_silent_connection_shows_how_long_it_has_been_silent_when_sent(
    redis_client: aioredis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The silence's figures move with time: a stream sending a second later than another says so."""
    t0 = 1_800_000_000_000
    clock = Clock(t0, monkeypatch)
    store = Store(redis_client, prefix)
    await redis_client.hset(store.keys.conn("c5"), mapping={
        "id": "c5", "account_id": "a", "provider": "stripe", "state": "connected", "version": "9",
        "expected_interval_s": "60", "last_event_at": str(t0 - 90_000)})
    hub = ChangeHub(redis_client, store.keys.changes, 16)
    record = await hub.read(store, Change("c5", "a", 9))
    assert record is not None
    first, second = Sink(), Sink()
    await stream_module.EventStream(first, 1.0).connection(record, hub.rendered)  # type: ignore[arg-type]
    clock.at = t0 + 1000
    await stream_module.EventStream(second, 1.0).connection(record, hub.rendered)  # type: ignore[arg-type]
    assert _sent(first)["silence"]["quiet_for_s"] == 90
    assert _sent(second)["silence"]["quiet_for_s"] == 91
    assert _sent(second) == presentation.connection_view(record, t0 + 1000)


@given(
    state=st.sampled_from(["pending", "connected", "failed", "disconnected"]),
    deadline=st.integers(0, 20_000),
    last_event=st.integers(0, 20_000),
    expected_interval_s=st.integers(0, 5),
    quiet_after_ms=st.integers(0, 5_000),
    rejected=st.integers(0, 4),
    prev_until=st.integers(0, 20_000),
    now=st.integers(1, 20_000),
    later=st.floats(0, 1),
)
def test_a_rendering_holds_until_its_boundary_and_not_at_it(
    state: str, deadline: int, last_event: int, expected_interval_s: int, quiet_after_ms: int, rejected: int,
    prev_until: int, now: int, later: float,
) -> None:
    """What a stream may send as rendered (``view_valid_until``): the view at any moment before the
    boundary is the view rendered, and at the boundary it is not."""
    base = 1_800_000_000_000
    record = ConnectionRecord(
        id="c6", account_id="a", provider="stripe", state=state, webhook_url="https://h/x", version=1,  # type: ignore[arg-type]
        pending_deadline_ms=base + deadline, last_event_at_ms=base + last_event if last_event else 0,
        expected_interval_s=expected_interval_s, quiet_after_ms=quiet_after_ms, rejected_since_event=rejected,
        prev_secret="(sealed)" if prev_until else None, prev_secret_until_ms=base + prev_until if prev_until else 0)
    rendered_at = base + now
    view = presentation.connection_view(record, rendered_at)
    until = presentation.view_valid_until(record, rendered_at)
    if until is None:
        assert presentation.connection_view(record, rendered_at + 10**9) == view
        return
    assert until > rendered_at
    assert presentation.connection_view(record, rendered_at + int((until - 1 - rendered_at) * later)) == view
    assert presentation.connection_view(record, until - 1) == view
    assert presentation.connection_view(record, until) != view


async def test_a_stream_kept_busy_by_changes_still_ends_when_its_token_expires(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """A leaked page token must not stay useful past its expiry because the account keeps changing:
    changes already queued for the stream are not sent once the token has expired (the stream never
    has to wait for one, so only a check per change can end it)."""
    from types import SimpleNamespace

    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from services.status_api.auth import PRINCIPAL, Principal
    from services.status_api.state import API
    from shared.models import now_ms

    store = Store(redis_client, prefix)
    for n in range(3):
        await redis_client.hset(store.keys.conn(f"b{n}"), mapping={
            "id": f"b{n}", "account_id": "acct-busy", "state": "connected", "version": "5"})
    hub = ChangeHub(redis_client, store.keys.changes, 16)
    app = web.Application()
    app[API] = SimpleNamespace(settings=SimpleNamespace(sse_heartbeat_s=15.0), reads=store, hub=hub)  # type: ignore[assignment]
    request = make_mocked_request("GET", "/v1/accounts/acct-busy/stream", app=app)
    request[PRINCIPAL] = Principal("browser", "acct-busy", expires_at_ms=now_ms() - 1, token_id="t")
    listener = hub.listen("acct-busy", None)
    for n in range(3):  # queued before the stream looks: it never waits
        listener.offer(Change(f"b{n}", "acct-busy", 5))
    sink = Sink()
    stream = stream_module.EventStream(sink, 1.0)  # type: ignore[arg-type]
    await asyncio.wait_for(stream_module._pump(request, stream_module.Scope("acct-busy"), stream, listener), 5)
    listener.stop_alarm()
    sent = b"".join(sink.frames)
    assert b"event: token_expired" in sent
    assert b"event: connection" not in sent  # none of the queued changes went out after the expiry
