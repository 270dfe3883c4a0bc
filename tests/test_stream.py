"""Server-Sent Events, end to end: a signed webhook through receiver and verifier shows up on an open
stream (no polling), new connections appear on the account stream, and a resume misses nothing."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from hookstatus_client import HookStatusClient, SseParser, StreamEvent
from services.status_api import presentation
from services.status_api import stream as stream_module
from services.status_api.app import create_app as create_status_api
from services.status_api.config import Settings as StatusSettings
from services.status_api.hub import ChangeHub, Signal
from services.status_api.state import API
from services.status_api.stream import decode_cursor, encode_cursor
from shared.keys import Keys
from shared.models import now_ms
from shared.records import ConnectionRecord
from tests.signing import standard_webhooks_headers
from tests.system import TOKEN, System, free_port, start_system

EVENT = orjson.dumps({"type": "invoice.paid"})
GUARD_S = 15  # a guard against hanging, not a speed assertion


async def _signed(system: System, conn: dict[str, Any]) -> None:
    headers = standard_webhooks_headers(conn["secret"], EVENT, f"msg_{uuid.uuid4().hex}")
    status, _ = await system.post_hook(conn["webhook_url"], EVENT, headers)
    assert status == 202


async def _until(events: AsyncIterator[StreamEvent], name: str) -> list[StreamEvent]:
    seen = []
    async for event in events:
        seen.append(event)
        if event.event == name:
            return seen
    raise AssertionError(f"the stream ended before a {name!r} event")


async def _next_connection(events: AsyncIterator[StreamEvent]) -> dict[str, Any]:
    async for event in events:
        if event.event == "connection":
            return event.data  # type: ignore[no-any-return]
    raise AssertionError("the stream ended")


async def test_a_signed_webhook_reaches_an_open_stream(system: System) -> None:
    conn = await system.create()
    async with HookStatusClient(system.api_url, TOKEN, session=system.session) as client, \
            asyncio.timeout(GUARD_S):
        events = client.stream(connection_id=conn["id"])
        first = await _until(events, "ready")
        assert [e.event for e in first] == ["connection", "ready"]
        assert first[0].data["state"] == "pending"
        assert first[0].data["display"] == "pending"
        assert first[0].data["cta"]["label"] == "Waiting for first event…"

        await _signed(system, conn)
        view = await _next_connection(events)
        assert view["id"] == conn["id"]
        assert view["state"] == "connected"
        assert view["display"] == "connected"
        assert view["cta"]["label"] == "Connected"
        assert view["version"] > first[0].data["version"]
        assert "secret" not in view
        await events.aclose()


async def test_the_account_stream_shows_connections_created_after_it_opened(system: System) -> None:
    before = await system.create(account_id="acct-live")
    await system.create(account_id="acct-other")
    token = await system.browser_token("acct-live")
    url = f"{system.api_url}/v1/accounts/acct-live/stream"
    async with system.session.get(url, params={"token": token}) as resp, asyncio.timeout(GUARD_S):
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        parser = SseParser()
        events: list[tuple[str, Any]] = []
        created: dict[str, Any] | None = None
        async for raw in resp.content:
            event = parser.feed_line(raw.decode().rstrip("\r\n"))
            if event is None:
                continue
            events.append((event.event, orjson.loads(event.data)))
            if event.event == "ready":
                created = await system.create(account_id="acct-live")
            if event.event == "connection" and created and orjson.loads(event.data)["id"] == created["id"]:
                break
    assert created is not None
    assert events[0][0] == "connection" and events[0][1]["id"] == before["id"]
    assert events[1] == ("ready", {"connections": 1, "resumed": False})
    assert events[-1][1]["state"] == "pending"
    assert all(data.get("account_id", "acct-live") == "acct-live" for _, data in events)
    assert parser.retry_ms == 2000


async def test_resume_with_last_event_id_sends_what_changed_and_nothing_else(system: System) -> None:
    a, b, c = [await system.create(account_id="acct-r") for _ in range(3)]
    async with HookStatusClient(system.api_url, TOKEN, session=system.session) as client:
        async with asyncio.timeout(GUARD_S):
            first = await _until(client.stream(account_id="acct-r"), "ready")
        snapshot = {e.data["id"] for e in first if e.event == "connection"}
        assert snapshot == {a["id"], b["id"], c["id"]}
        last_id = first[-2].id
        assert last_id is not None

        # While nobody listens: one connection changes, one is created.
        await _signed(system, a)
        await system.wait_for(a["id"], lambda v: v["state"] == "connected")
        d = await system.create(account_id="acct-r")

        async with asyncio.timeout(GUARD_S):
            resumed = await _until(client.stream(account_id="acct-r", last_event_id=last_id), "ready")
    got = {e.data["id"]: e.data for e in resumed if e.event == "connection"}
    assert set(got) == {a["id"], d["id"]}
    assert got[a["id"]]["state"] == "connected"
    assert resumed[-1].data == {"connections": 4, "resumed": True}
    # The resumed stream's cursor covers every connection, so a further resume re-sends nothing.
    assert set(decode_cursor(resumed[-2].id)) == {x["id"][:12] for x in (a, b, c, d)}


async def test_heartbeats_keep_the_stream_alive(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None
) -> None:
    async with start_system(amqp_url, redis_url, prefix, status_api={"sse_heartbeat_s": 0.1}) as system:
        conn = await system.create()
        url = f"{system.api_url}/v1/connections/{conn['id']}/stream"
        parser = SseParser()
        async with system.session.get(url, headers=system.auth) as resp, asyncio.timeout(GUARD_S):
            async for raw in resp.content:
                parser.feed_line(raw.decode().rstrip("\r\n"))
                if parser.comments >= 2:
                    break
    assert parser.comments >= 2


async def _own_api(amqp_url: str, redis_url: str, prefix: str, **overrides: Any) -> tuple[web.AppRunner, int]:
    """A status API of our own (no receiver or verifier), so the test can reach into it."""
    settings = StatusSettings.from_env(
        amqp_url=amqp_url, redis_url=redis_url, redis_prefix=prefix, amqp_prefix=prefix,
        analytics_exchange=f"{prefix}.analytics", status_api_token=(TOKEN,), **overrides,
    )
    runner = web.AppRunner(create_status_api(settings))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def test_after_a_lost_subscription_streams_resync_what_they_missed(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None
) -> None:
    runner, port = await _own_api(amqp_url, redis_url, prefix)
    try:
        async with HookStatusClient(f"http://127.0.0.1:{port}", TOKEN) as client, asyncio.timeout(GUARD_S):
            conn = await client.create_connection("acct-rs", "standard-webhooks")
            events = client.stream(account_id="acct-rs")
            await _until(events, "ready")
            # A change whose notification was lost (stored, never published) ...
            await redis_client.hset(Keys(prefix).conn(conn["id"]), mapping={"events_received": 7})
            await redis_client.hincrby(Keys(prefix).conn(conn["id"]), "version", 1)
            # ... is sent when the hub re-subscribes and tells every stream to re-read its scope.
            runner.app[API].hub.broadcast(Signal.RESYNC)
            view = await _next_connection(events)
            await events.aclose()
    finally:
        await runner.cleanup()
    assert view["id"] == conn["id"]
    assert view["events_received"] == 7
    assert view["version"] == conn["version"] + 1


async def test_shutdown_closes_open_streams(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None
) -> None:
    runner, port = await _own_api(amqp_url, redis_url, prefix)
    lines: list[bytes] = []
    async with aiohttp.ClientSession() as session, asyncio.timeout(GUARD_S):
        url = f"http://127.0.0.1:{port}/v1/accounts/acct-x/stream"
        async with session.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 200
            async for raw in resp.content:
                lines.append(raw)
                if raw.startswith(b"event: ready"):
                    break
            cleanup = asyncio.create_task(runner.cleanup())
            rest = await resp.content.read()  # returns at end of stream: the server closed it
            await cleanup
    assert b"event: ready\n" in lines
    assert b"event: connection" not in rest


async def test_a_client_that_stops_reading_is_ended_by_the_write_timeout(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None
) -> None:
    """A frame the socket takes at once is written without a timer; one that must wait for the client
    is still bounded: a client that never reads ends its stream, not holds it forever."""
    runner, port = await _own_api(amqp_url, redis_url, prefix, sse_write_timeout_s=0.3)
    keys, ids = Keys(prefix), [f"{n:032x}" for n in range(50)]
    for cid in ids:  # big frames (a long URL), so the socket fills soon
        await redis_client.hset(keys.conn(cid), mapping={
            "id": cid, "account_id": "acct-stuck", "state": "connected", "provider": "stripe", "version": "1",
            "webhook_url": "https://example.com/" + "x" * 4000})
        await redis_client.sadd(keys.account("acct-stuck"), cid)
    hub = runner.app[API].hub
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sent = 0
    try:
        async with asyncio.timeout(GUARD_S):
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            sock.sendall(f"GET /v1/accounts/acct-stuck/stream HTTP/1.1\r\nHost: x\r\n"
                         f"Authorization: Bearer {TOKEN}\r\n\r\n".encode())
            while not hub.listeners:
                await asyncio.sleep(0.01)
            version = 1
            while hub.listeners:  # changes until the stream, stuck writing, has ended
                version += 1
                async with redis_client.pipeline(transaction=False) as pipe:
                    for cid in ids:  # one change of each: one frame each
                        pipe.hset(keys.conn(cid), "version", version)
                        pipe.publish(keys.changes, orjson.dumps(
                            {"id": cid, "account_id": "acct-stuck", "version": version, "state": "connected"}))
                    await pipe.execute()
                sent += len(ids)
                await asyncio.sleep(0.02)
    finally:
        sock.close()
        await runner.cleanup()
    assert sent > 100  # it wrote frames until the client's socket was full, then waited, then ended


async def test_a_busy_stream_sends_no_heartbeat_and_an_idle_one_does(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None
) -> None:
    """A heartbeat follows ``SSE_HEARTBEAT_S`` without anything sent, as before one timer served
    every wait: changes coming faster than that keep it away, and it comes once they stop."""
    runner, port = await _own_api(amqp_url, redis_url, prefix, sse_heartbeat_s=0.6)
    keys, cid = Keys(prefix), "e" * 32
    await redis_client.hset(keys.conn(cid), mapping={"id": cid, "account_id": "acct-busy", "state": "connected",
                                                     "provider": "stripe", "version": "1"})
    await redis_client.sadd(keys.account("acct-busy"), cid)
    lines: list[tuple[float, bytes]] = []
    loop = asyncio.get_running_loop()
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(GUARD_S), session.get(
                f"http://127.0.0.1:{port}/v1/accounts/acct-busy/stream",
                headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            async for raw in resp.content:
                if raw.startswith(b"event: ready"):
                    break

            async def read() -> None:
                async for raw in resp.content:
                    lines.append((loop.time(), raw))
                    if raw.startswith(b": heartbeat"):
                        return

            reading = asyncio.create_task(read())
            for version in range(2, 42):  # a change every 50 ms for 2 s
                await redis_client.hset(keys.conn(cid), "version", version)
                await redis_client.publish(keys.changes, orjson.dumps(
                    {"id": cid, "account_id": "acct-busy", "version": version, "state": "connected"}))
                await asyncio.sleep(0.05)
            stopped = loop.time()
            await reading
    finally:
        await runner.cleanup()
    frames = [at for at, raw in lines if raw.startswith(b"id: ")]
    heartbeats = [at for at, raw in lines if raw.startswith(b": heartbeat")]
    assert len(frames) >= 30
    assert len(heartbeats) == 1 and heartbeats[0] > stopped  # none while busy, one once idle


def test_a_stream_that_falls_behind_is_dropped_not_the_process() -> None:
    hub = ChangeHub(aioredis.Redis(), "unused", queue_size=3)
    slow = hub.listen("acct", None)
    other = hub.listen("acct-2", None)
    for version in range(1, 10):
        hub.dispatch(orjson.dumps({"id": "c" * 32, "account_id": "acct", "version": version, "state": "x"}))
    assert slow.queue.get_nowait() is Signal.DROPPED
    assert other.queue.empty()  # other accounts' streams never see it
    hub.forget(slow)
    hub.dispatch(b"not json")  # ignored, not raised


@pytest.mark.parametrize("versions", [{}, {"a" * 32: 3}, {"a" * 32: 3, "b" * 32: 12, "c" * 32: 1}])
def test_cursor_round_trip(versions: dict[str, int]) -> None:
    assert decode_cursor(encode_cursor(versions)) == {k[:12]: v for k, v in versions.items()}


@given(st.lists(st.tuples(st.sampled_from(["a" * 32, "a" * 12 + "b" * 20, "c" * 32, "d" * 32, "0" * 32]),
                          st.integers(1, 50)), max_size=30))
def test_a_streams_cursor_kept_encoded_is_the_cursor_of_what_it_showed(marks: list[tuple[str, int]]) -> None:
    stream = stream_module.EventStream(None, 1.0)  # type: ignore[arg-type]  # writes nothing here
    for cid, version in marks:
        stream.mark(cid, version)
        assert stream.cursor.text() == encode_cursor(stream.shown)


def test_cursor_leaves_out_colliding_prefixes_and_ignores_garbage() -> None:
    cursor = encode_cursor({"a" * 12 + "1" * 20: 2, "a" * 12 + "2" * 20: 3, "b" * 32: 4})
    assert decode_cursor(cursor) == {"b" * 12: 4}
    assert decode_cursor("nonsense-123.x-\n") == {}
    assert decode_cursor(None) == {}


async def test_a_connection_going_silent_is_pushed_without_any_stored_change(system: System) -> None:
    conn = await system.create(expected_interval_s=1)
    await _signed(system, conn)
    await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
    async with HookStatusClient(system.api_url, TOKEN, session=system.session) as client, \
            asyncio.timeout(GUARD_S):
        events = client.stream(connection_id=conn["id"])
        first = await _next_connection(events)
        # (Unless the second had already passed when the stream opened: then it opens silent.)
        second = await _next_connection(events) if first["display"] == "connected" else first
        await events.aclose()
    assert second["display"] == "silent"
    assert second["health"] == "silent"
    assert second["version"] == first["version"]  # nothing was stored: time alone changed it
    assert second["cta"]["secondary"] == "Send test event"


async def test_two_streams_each_send_a_change_as_it_is_when_they_send_it(
    system: System, redis_client: aioredis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One change of a pending connection, its deadline passing between the two streams' sends (the
    streams' clock is moved right after the first one renders it): the first sends ``pending`` and then
    ``failed`` at the deadline, the second ``failed`` at once, not the first's rendering."""
    conn = await system.create(account_id="acct-clock")
    key = Keys(prefix).conn(conn["id"])
    deadline = now_ms() + 3_600_000  # far in real time: no sweep expires it meanwhile
    await redis_client.hset(key, "pending_deadline", deadline)
    clock = [deadline - 1000]
    monkeypatch.setattr(stream_module, "now_ms", lambda: clock[0])
    monkeypatch.setattr(presentation, "now_ms", lambda: clock[0])
    async with HookStatusClient(system.api_url, TOKEN, session=system.session) as client, \
            asyncio.timeout(GUARD_S):
        streams = [client.stream(account_id="acct-clock") for _ in range(2)]
        for events in streams:
            first = await _until(events, "ready")
            assert [e.data["display"] for e in first if e.event == "connection"] == ["pending"]
        changed = int(await redis_client.hincrby(key, "version", 1))

        def rendering(record: ConnectionRecord, now: int | None = None) -> dict[str, Any]:
            view = presentation.connection_view(record, now)
            if record.version == changed:
                clock[0] = deadline  # the deadline passes just after the first rendering of the change
            return view

        monkeypatch.setattr(stream_module, "connection_view", rendering)
        await redis_client.publish(Keys(prefix).changes, orjson.dumps(
            {"id": conn["id"], "account_id": "acct-clock", "version": changed, "state": "pending"}))
        sent = [await _next_connection(events) for events in streams]
        assert [view["version"] for view in sent] == [changed, changed]
        assert sorted(view["display"] for view in sent) == ["failed", "pending"]
        early = streams[[view["display"] for view in sent].index("pending")]
        again = await _next_connection(early)  # the one that sent it before the deadline, at the deadline
        assert (again["display"], again["version"]) == ("failed", changed)
        for events in streams:
            await events.aclose()
