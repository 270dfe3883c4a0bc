"""The three product analytics events, consumed from RabbitMQ by a queue bound to the test's own
analytics exchange, and counted in Prometheus; publishing never fails or holds up a request."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractQueue
from prometheus_client import REGISTRY

from hookstatus_client import HookStatusClient
from services.status_api.analytics import Analytics
from tests.signing import standard_webhooks_headers
from tests.system import System

GUARD_S = 15  # against hanging only
COMMON_FIELDS = {"event", "event_id", "schema_version", "occurred_at", "account_id", "connection_id", "provider"}


@pytest.fixture
async def analytics_queue(system: System, amqp_url: str) -> AsyncIterator[AbstractQueue]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(system.common["analytics_exchange"])
        queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="#")
        yield queue


async def _collect(queue: AbstractQueue, done: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(GUARD_S), queue.iterator() as messages:
        async for message in messages:
            await message.ack()
            body = orjson.loads(message.body)
            assert message.routing_key == body["event"]
            assert message.content_type == "application/json"
            assert message.type == body["event"] and message.message_id == body["event_id"]
            assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            got.append(body)
            if done(got):
                return got
    return got


def _count(event: str) -> float:
    return REGISTRY.get_sample_value("hookstatus_analytics_events_total", {"event": event}) or 0.0


def _of(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]


async def test_setup_completed_is_published_and_counted(system: System, analytics_queue: AbstractQueue) -> None:
    before = _count("integration_setup_completed")
    conn = await system.create(account_id="acct-an")
    [event] = await _collect(analytics_queue, lambda got: len(got) == 1)
    assert COMMON_FIELDS <= set(event)
    assert event["event"] == "integration_setup_completed"
    assert event["schema_version"] == 1
    assert event["account_id"] == "acct-an"
    assert event["connection_id"] == conn["id"]
    assert event["provider"] == "standard-webhooks"
    assert event["occurred_at"].endswith("Z")
    assert conn["secret"] not in orjson.dumps(event).decode()
    assert _count("integration_setup_completed") == before + 1


async def test_reconnect_attempted_on_a_second_setup_and_on_reconnect(
    system: System, analytics_queue: AbstractQueue
) -> None:
    before = _count("integration_reconnect_attempted")
    first = await system.create(account_id="acct-re")
    await system.create("generic-hmac-sha256", account_id="acct-re")  # another provider: not a retry
    second = await system.create(account_id="acct-re")
    status, _ = await system.api("POST", f"/v1/connections/{first['id']}/reconnect")
    assert status == 200

    events = await _collect(
        analytics_queue, lambda got: len(_of(got, "integration_reconnect_attempted")) == 2
    )
    on_create, on_reconnect = sorted(_of(events, "integration_reconnect_attempted"), key=lambda e: e["trigger"])
    assert on_create["trigger"] == "create"
    assert on_create["connection_id"] == second["id"]
    assert on_create["existing_connection_id"] == first["id"]
    assert on_create["existing_state"] == "pending"
    assert on_reconnect["trigger"] == "reconnect"
    assert on_reconnect["connection_id"] == first["id"]
    assert on_reconnect["new_secret"] is False
    assert len(_of(events, "integration_setup_completed")) == 3
    assert _count("integration_reconnect_attempted") == before + 2


async def test_status_viewed_with_a_browser_token_is_labelled(
    system: System, analytics_queue: AbstractQueue
) -> None:
    pending = await system.create(account_id="acct-v")
    connected = await system.create(account_id="acct-v")
    failed = await system.create(account_id="acct-v", timeout_s=1)
    body = orjson.dumps({"type": "ping"})
    headers = standard_webhooks_headers(connected["secret"], body, f"msg_{uuid.uuid4().hex}")
    assert (await system.post_hook(connected["webhook_url"], body, headers))[0] == 202
    await system.wait_for(connected["id"], lambda v: v["state"] == "connected")
    await system.wait_for(failed["id"], lambda v: v["state"] == "failed")
    await system.get(pending["id"])  # the product backend's own read is not a view

    token = await system.browser_token("acct-v")
    async with HookStatusClient(system.api_url, token, session=system.session) as page:
        for conn in (pending, connected, failed):
            await page.get_connection(conn["id"])
        async with asyncio.timeout(GUARD_S):
            async for event in page.stream(account_id="acct-v"):
                if event.event == "ready":
                    break

    events = await _collect(analytics_queue, lambda got: len(_of(got, "integration_status_viewed")) == 6)
    views = _of(events, "integration_status_viewed")
    by_via = {via: {e["connection_id"]: e["status"] for e in views if e["via"] == via} for via in ("api", "stream")}
    expected = {pending["id"]: "pending", connected["id"]: "connected", failed["id"]: "error"}
    assert by_via == {"api": expected, "stream": expected}
    assert {e["display"] for e in views} == {"pending", "connected", "failed"}


async def test_emitting_never_raises_when_the_queue_is_full_or_the_broker_is_gone(amqp_url: str) -> None:
    connection = await aio_pika.connect_robust(amqp_url)
    analytics = Analytics(connection, "unused-exchange", size=1, timeout_s=1)
    dropped = "hookstatus_analytics_dropped_total"
    full_before = REGISTRY.get_sample_value(dropped, {"event": "x_test", "reason": "queue_full"}) or 0
    for _ in range(3):  # no drain task: the queue holds one
        analytics.emit("x_test", account_id="a", connection_id="c", provider="p")
    assert REGISTRY.get_sample_value(dropped, {"event": "x_test", "reason": "queue_full"}) == full_before + 2

    await connection.close()
    gone_before = REGISTRY.get_sample_value(dropped, {"event": "x_test", "reason": "broker_unavailable"}) or 0
    drain = asyncio.create_task(analytics.drain_forever())
    await analytics.close()  # flushes what is queued: the broker is away, so it is dropped and counted
    drain.cancel()
    assert REGISTRY.get_sample_value(dropped, {"event": "x_test", "reason": "broker_unavailable"}) == gone_before + 1


async def test_a_page_re_reading_a_status_is_one_view(system: System) -> None:
    """Reads of the same status by the same browser token within ANALYTICS_VIEW_REPEAT_S count once; another
    token, or the status changing, is a new view."""
    conn = await system.create(account_id="acct-rv")
    before = _count("integration_status_viewed")
    first, second = await system.browser_token("acct-rv"), await system.browser_token("acct-rv", ttl_s=600)
    assert first != second
    async with HookStatusClient(system.api_url, first, session=system.session) as page:
        for _ in range(5):
            assert (await page.get_connection(conn["id"]))["display"] == "pending"
    assert _count("integration_status_viewed") == before + 1
    async with HookStatusClient(system.api_url, second, session=system.session) as other_page:
        await other_page.get_connection(conn["id"])
        await other_page.get_connection(conn["id"])
    assert _count("integration_status_viewed") == before + 2
    body = orjson.dumps({"type": "ping"})
    headers = standard_webhooks_headers(conn["secret"], body, f"msg_{uuid.uuid4().hex}")
    assert (await system.post_hook(conn["webhook_url"], body, headers))[0] == 202
    await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
    async with HookStatusClient(system.api_url, first, session=system.session) as page:
        assert (await page.get_connection(conn["id"]))["display"] == "connected"  # a new status: a new view
        await page.get_connection(conn["id"])
    assert _count("integration_status_viewed") == before + 3
