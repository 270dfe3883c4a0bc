"""A product backend that receives the notifier's webhooks (a real aiohttp server on a free port), and
the whole system with the notifier running in this process."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from services.notifier.config import Settings as NotifierSettings
from services.notifier.topology import NotifyTopology
from tests.system import System, free_port, start_system

RETRY_DELAYS_S = "0.3,0.6"  # three attempts per event, quickly


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return orjson.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class ProductReceiver:
    """Answers each path with the statuses queued for it (then 200), and records every request."""

    port: int
    received: list[Received] = field(default_factory=list)
    answers: dict[str, deque[int]] = field(default_factory=lambda: defaultdict(deque))
    always: dict[str, int] = field(default_factory=dict)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/{path}"

    async def handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        self.received.append(Received(path, dict(request.headers), await request.read()))
        queued = self.answers[path]
        return web.Response(status=queued.popleft() if queued else self.always.get(path, 200))

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def wait_for(self, check: Callable[[], bool], timeout_s: float = 40) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            if time.monotonic() > deadline:
                seen = [(r.path, r.event.get("type")) for r in self.received]
                raise AssertionError(f"not received in {timeout_s}s; received: {seen}")
            await asyncio.sleep(0.05)

    async def wait_event(self, path: str, kind: str, connection_id: str | None = None) -> Received:
        def match() -> Received | None:
            for r in self.at(path):
                data = r.event.get("data", {})
                if r.event.get("type") == kind and connection_id in (None, data.get("id"), data.get("connection_id")):
                    return r
            return None

        await self.wait_for(lambda: match() is not None)
        found = match()
        assert found is not None
        return found


@pytest.fixture
async def product() -> AsyncIterator[ProductReceiver]:
    receiver = ProductReceiver(free_port())
    app = web.Application()
    app.router.add_post("/{path}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver.port).start()
    yield receiver
    await runner.cleanup()


@pytest.fixture
async def notifier_cleanup(amqp_url: str, prefix: str) -> AsyncIterator[None]:
    """Delete the notifier's queues and exchanges afterwards."""
    yield
    topology = NotifyTopology(prefix, tuple(int(float(s) * 1000) for s in RETRY_DELAYS_S.split(",")))
    defaults = NotifyTopology(prefix, NotifierSettings().retry_delays_ms)  # what `make run` declares
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        for queue in sorted({*topology.queues, *defaults.queues}):
            channel = await connection.channel()
            try:
                await channel.queue_delete(queue)
            except aio_pika.exceptions.AMQPError:
                pass
        for exchange in (topology.transitions, topology.jobs_exchange, topology.dead):
            channel = await connection.channel()
            try:
                await channel.exchange_delete(exchange)
            except aio_pika.exceptions.AMQPError:
                pass


NOTIFIER = {"notifier_allow_loopback": True, "notifier_retry_delays_s": RETRY_DELAYS_S,
            "notifier_disable_after_failures": 2}


@pytest.fixture
async def notified(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None,
    notifier_cleanup: None,
) -> AsyncIterator[System]:
    """The whole system and the notifier, loopback allowed (the product's receiver is on 127.0.0.1)."""
    async with start_system(amqp_url, redis_url, prefix, status_api={"notifier_allow_loopback": True}) as system:
        system.start_notifier(**NOTIFIER)
        yield system


async def register(system: System, url: str, **fields: Any) -> dict[str, Any]:
    status, data = await system.api("POST", "/v1/notification-endpoints", json={"url": url, **fields})
    assert status == 201, data
    return data  # type: ignore[no-any-return]


async def attempts(system: System, eid: str) -> list[dict[str, Any]]:
    status, data = await system.api("GET", f"/v1/notification-endpoints/{eid}/attempts")
    assert status == 200, data
    return data["attempts"]  # type: ignore[no-any-return]
