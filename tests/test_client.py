"""The typed async client against the running system, its SSE parser, and its resume logic."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web

from hookstatus_client import HookStatusClient, HookStatusError, SseParser
from tests.signing import standard_webhooks_headers
from tests.system import TOKEN, System, free_port

GUARD_S = 15  # against hanging only


@pytest.fixture
async def client(system: System) -> AsyncIterator[HookStatusClient]:
    async with HookStatusClient(system.api_url, TOKEN) as c:
        yield c


async def test_the_whole_lifecycle_through_the_client(system: System, client: HookStatusClient) -> None:
    conn = await client.create_connection("acct-c", "standard-webhooks", timeout_s=300, expected_interval_s=3600)
    assert conn["state"] == "pending" and conn["display"] == "pending"
    assert conn["secret"].startswith("whsec_")
    assert conn["cta"] == {"label": "Waiting for first event…", "action": "send_test",
                           "secondary": "Send test event", "secondary_action": "send_test",
                           "hint": "Waiting for the first signed event from the provider."}
    assert "secret" not in await client.get_connection(conn["id"])
    assert [c["id"] for c in await client.list_connections("acct-c")] == [conn["id"]]

    body = orjson.dumps({"type": "invoice.paid"})
    headers = standard_webhooks_headers(conn["secret"], body, f"msg_{uuid.uuid4().hex}")
    assert (await system.post_hook(conn["webhook_url"], body, headers))[0] == 202
    await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
    [delivery] = await client.deliveries(conn["id"])
    assert delivery["outcome"] == "verified" and delivery["event_type"] == "invoice.paid"

    test = await client.start_test(conn["id"], timeout_s=60)
    assert (await client.get_test(conn["id"], test["id"]))["state"] == "waiting"
    assert (await client.reconnect(conn["id"]))["state"] == "pending"
    gone = await client.disconnect(conn["id"])
    assert gone["state"] == "disconnected" and gone["display"] == "disconnected"
    assert gone["cta"]["label"] == "Connect"

    token = await client.create_browser_token("acct-c", ttl_s=120)
    assert token["account_id"] == "acct-c" and token["token"].count(".") == 2
    assert any(p["name"] == "stripe" for p in await client.providers())


async def test_api_errors_become_hookstatus_errors(system: System, client: HookStatusClient) -> None:
    with pytest.raises(HookStatusError) as err:
        await client.get_connection(uuid.uuid4().hex)
    assert (err.value.status, err.value.code) == (404, "connection_not_found")
    with pytest.raises(HookStatusError) as err:
        await client.create_connection("acct-c", "no-such-provider")
    assert (err.value.status, err.value.code) == (400, "unknown_provider")
    async with HookStatusClient(system.api_url, "wrong-token") as stranger:
        with pytest.raises(HookStatusError) as err:
            await stranger.list_connections("acct-c")
        assert (err.value.status, err.value.code) == (401, "invalid_token")
        assert "wrong-token" not in repr(stranger)
    async with HookStatusClient(f"http://127.0.0.1:{free_port()}", TOKEN) as nowhere:
        with pytest.raises(HookStatusError) as err:
            await nowhere.list_connections("acct-c")
        assert (err.value.status, err.value.code) == (0, "unreachable")
    with pytest.raises(ValueError):
        await anext(client.stream())


def test_the_sse_parser_follows_the_spec() -> None:
    parser = SseParser()
    lines = [": a comment", "retry: 1500", "", "event: connection", "id: 7", "data: {\"a\":", "data: 1}", "",
             "id: 8", "", "data:no-space", "", "event: x", "", "bogus field", "data: last", ""]
    events = [e for e in (parser.feed_line(line) for line in lines) if e is not None]
    assert [(e.event, e.data, e.id) for e in events] == [
        ("connection", "{\"a\":\n1}", "7"),
        ("message", "no-space", "8"),  # an id without data moves the last event id on, dispatches nothing
        ("message", "last", "8"),  # an event type without data is dropped with it
    ]
    assert parser.retry_ms == 1500 and parser.comments == 1


async def test_a_broken_stream_resumes_with_last_event_id() -> None:
    """A stand-in SSE server (our own seam): the first stream breaks after one event, the second checks
    that the client came back with that event's id."""
    seen_ids: list[str | None] = []

    async def sse(request: web.Request) -> web.StreamResponse:
        seen_ids.append(request.headers.get("Last-Event-ID"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        n = len(seen_ids)
        await response.write(f"retry: 10\nid: cursor-{n}\nevent: connection\ndata: {{\"n\": {n}}}\n\n".encode())
        return response  # ends the stream: the client should come back

    app = web.Application()
    app.router.add_get("/v1/accounts/{account_id}/stream", sse)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with HookStatusClient(f"http://127.0.0.1:{port}", TOKEN) as client, asyncio.timeout(GUARD_S):
            got = []
            async for event in client.stream(account_id="acct", last_event_id="cursor-0"):
                got.append((event.id, event.connection["n"]))  # type: ignore[typeddict-item]
                if len(got) == 3:
                    break
    finally:
        await runner.cleanup()
    assert got == [("cursor-1", 1), ("cursor-2", 2), ("cursor-3", 3)]
    assert seen_ids[:3] == ["cursor-0", "cursor-1", "cursor-2"]
