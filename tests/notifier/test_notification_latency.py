"""How long a transition takes to reach the product: 50 pending connections turned connected one at a
time by a signed webhook, each ``connection.connected`` notification received by a local aiohttp
endpoint. Printed (p50, p90, p99, max), never asserted: the figures are in docs/PERFORMANCE.md.

The span measured: the notification's ``timestamp`` (when our receiver read the provider's webhook:
the transition's time, as the verifier's script records it in the outbox) to the product's endpoint
reading the notification: the receiver's publish, the verifier, the relay's poll of the outbox index,
the broker, the fan-out and the signed POST. (From the test sending the webhook it is the same to a
millisecond.)

Run with the production default ``NOTIFIER_RELAY_INTERVAL_S`` (0.2 s) and with 0.05 s: the relay's poll
is most of the wait.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from standardwebhooks import Webhook

from tests.notifier.conftest import register
from tests.signing import standard_webhooks_headers
from tests.system import System, free_port, start_system

pytestmark = pytest.mark.slow
TRANSITIONS = 50


class Endpoint:
    """The product's endpoint: notes when each notification arrived (wall clock, as the timestamps)."""

    def __init__(self) -> None:
        self.arrived: dict[str, tuple[float, bytes, dict[str, str]]] = {}
        self.event = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        at = time.time()
        body = await request.read()
        self.arrived[orjson.loads(body)["data"]["id"]] = (at, body, dict(request.headers))
        self.event.set()
        return web.Response(status=204)

    async def wait_for(self, cid: str, timeout_s: float = 30) -> tuple[float, bytes, dict[str, str]]:
        async with asyncio.timeout(timeout_s):
            while cid not in self.arrived:
                self.event.clear()
                await self.event.wait()
        return self.arrived[cid]


@pytest.fixture(params=[0.2, 0.05], ids=["relay-0.2s-default", "relay-0.05s"])
async def measured(
    request: pytest.FixtureRequest, amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis,
    amqp_cleanup: None, notifier_cleanup: None,
) -> AsyncIterator[System]:
    async with start_system(amqp_url, redis_url, prefix, status_api={"notifier_allow_loopback": True}) as system:
        system.start_notifier(notifier_allow_loopback=True, notifier_relay_interval_s=request.param)
        yield system


def _summary(name: str, spans_ms: list[float]) -> str:
    ordered = sorted(spans_ms)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return (f"{name}: p50 {q[49]:.0f} ms, p90 {q[89]:.0f} ms, p99 {q[98]:.0f} ms, max {ordered[-1]:.0f} ms "
            f"(min {ordered[0]:.0f} ms, n={len(ordered)})")


async def test_transition_to_notification_latency(
    measured: System, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = Endpoint()
    app = web.Application()
    app.router.add_post("/notified", endpoint.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        registered = await register(measured, f"http://127.0.0.1:{port}/notified", events=["connection.connected"])
        connections = [await measured.create(account_id="acct-latency") for _ in range(TRANSITIONS)]
        spans_ms: list[float] = []
        body = orjson.dumps({"type": "invoice.paid", "data": {"amount": 1}})
        for conn in connections:
            # One transition at a time (latency, not throughput), at random moments: a fixed gap would
            # fall at the same point of the relay's poll cycle every time.
            await asyncio.sleep(random.uniform(0.05, 0.3))
            headers = standard_webhooks_headers(conn["secret"], body, f"msg_{uuid.uuid4().hex}")
            status, _ = await measured.post_hook(conn["webhook_url"], body, headers)
            assert status == 202
            arrived, raw, got_headers = await endpoint.wait_for(conn["id"])
            event = Webhook(registered["secret"]).verify(raw, got_headers)  # what the product would accept
            assert event["type"] == "connection.connected" and event["data"]["state"] == "connected"
            read_by_us = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
            spans_ms.append((arrived - read_by_us) * 1000)
    finally:
        await runner.cleanup()

    assert len(spans_ms) == TRANSITIONS
    interval = request.node.callspec.params["measured"]
    with capsys.disabled():
        print(f"\n[notification latency] NOTIFIER_RELAY_INTERVAL_S={interval}: webhook read -> product notified: "
              + _summary(f"{TRANSITIONS} transitions", spans_ms))
