"""Load shedding against a stranger with one webhook URL: requests that send their body slowly (or not
at all) must not fill ``SHED_IN_FLIGHT``, or a few hundred idle connections would have the receiver
refuse every provider's webhooks with 503 ``overloaded``. A webhook counts once its body is in: what
waits on a slow sender is not this process's load (``BODY_READ_TIMEOUT_S`` bounds it, 408)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.signing import standard_webhooks_headers
from tests.system import System, start_system

IN_FLIGHT = 4


@pytest.fixture
async def shedding(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None
) -> AsyncIterator[System]:
    receiver = {"shed_in_flight": IN_FLIGHT, "body_read_timeout_s": 5.0}
    async with start_system(amqp_url, redis_url, prefix, receiver=receiver) as running:
        yield running


async def _slow_sender(system: System, cid: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Headers and the start of a body promised 1,000 bytes long, then nothing."""
    host, port = system.receiver_url.split("//")[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"POST /hooks/{cid} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 "Content-Length: 1000\r\n\r\n{\"type\":".encode())
    await writer.drain()
    return reader, writer


async def test_slow_bodies_do_not_fill_the_in_flight_bound(shedding: System) -> None:
    system = shedding
    conn = await system.create()
    slow = [await _slow_sender(system, conn["id"]) for _ in range(IN_FLIGHT * 2)]
    try:
        await asyncio.sleep(0.5)  # every slow request is in its handler, waiting for its body
        body = b'{"type":"invoice.paid"}'
        for _ in range(3):
            headers = standard_webhooks_headers(conn["secret"], body, f"msg_{uuid.uuid4().hex}")
            status, answer = await system.post_hook(conn["webhook_url"], body, headers)
            assert status == 202, answer
    finally:
        for _, writer in slow:
            writer.close()
    await system.wait_for(conn["id"], lambda v: v["events_received"] == 3)


async def test_a_slow_sender_still_gets_its_408(shedding: System) -> None:
    system = shedding
    conn = await system.create()
    reader, writer = await _slow_sender(system, conn["id"])
    try:
        answer = await asyncio.wait_for(reader.read(200), 15)
    finally:
        writer.close()
    assert answer.split(b" ", 2)[1] == b"408", answer[:200]
