"""One change is read from Redis once, and its status object rendered once, however many streams show
it (the SSE fan-out's cost)."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import redis.asyncio as aioredis

from services.status_api import presentation
from services.status_api import stream as stream_module
from services.status_api.hub import Change, ChangeHub, Signal
from shared.records import ConnectionRecord
from shared.store import Store


class CountingStore:
    """Our own seam (``ChangeHub.read`` takes anything with ``get``) wrapping the real store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reads = 0

    async def get(self, cid: str, *, opened: bool = True) -> ConnectionRecord | None:
        self.reads += 1
        return await self.store.get(cid, opened=opened)


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
    monkeypatch.setattr(stream_module, "connection_view", lambda record: made.append(record.id) or
                        presentation.connection_view(record))
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
