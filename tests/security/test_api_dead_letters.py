"""Re-driving dead letters, on the real broker: valid deliveries that RabbitMQ dead-lettered after too
many returns (a long Redis outage with restarts) are moved back and processed; what a verifier
dead-lettered on purpose stays; and the command says what it did."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator

import aio_pika
import orjson
import pytest

from shared.broker import DELIVERY_LIMIT, Topology
from tests.signing import standard_webhooks_headers
from tests.system import System, SystemWith

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
async def idle(system_with: SystemWith) -> AsyncIterator[System]:
    """The system without a verifier running: deliveries wait in the queue."""
    async with system_with(verifiers=0) as running:
        yield running


async def _signed(system: System, conn: dict[str, object]) -> None:
    body = orjson.dumps({"type": "invoice.paid", "data": {}})
    headers = standard_webhooks_headers(str(conn["secret"]), body, f"msg_{uuid.uuid4().hex}")
    status, _ = await system.post_hook(str(conn["webhook_url"]), body, headers)
    assert status == 202


async def _exhaust_delivery_limit(channel: aio_pika.abc.AbstractChannel, topology: Topology, n: int) -> None:
    """Return every queued delivery until RabbitMQ dead-letters it, as crashing verifiers would."""
    queue = await channel.get_queue(topology.queue, ensure=False)
    returns = 0
    async with asyncio.timeout(60):
        while returns < n * (DELIVERY_LIMIT + 1):
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                await asyncio.sleep(0.02)
                continue
            await message.nack(requeue=True)
            returns += 1
        while (await channel.declare_queue(topology.dead_queue, passive=True)).declaration_result.message_count < n:
            await asyncio.sleep(0.05)


async def _count(channel: aio_pika.abc.AbstractChannel, name: str) -> int:
    return int((await channel.declare_queue(name, passive=True)).declaration_result.message_count or 0)


async def _run_redrive(system: System, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "AMQP_URL": system.common["amqp_url"], "AMQP_PREFIX": system.common["amqp_prefix"],
           "ANALYTICS_EXCHANGE": system.common["analytics_exchange"]}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scripts.redrive_dead_letters", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_dead_lettered_deliveries_are_redriven_and_processed(idle: System, amqp_url: str) -> None:
    conns = [await idle.create() for _ in range(3)]
    for conn in conns:
        await _signed(idle, conn)
    topology = Topology(idle.common["amqp_prefix"], idle.common["analytics_exchange"])
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await _exhaust_delivery_limit(channel, topology, len(conns))
        assert await _count(channel, topology.queue) == 0
        # And one the verifier dead-lettered on purpose: it can never be processed.
        dead = await channel.get_exchange(topology.dead_exchange, ensure=False)
        await dead.publish(aio_pika.Message(b"not json", headers={"x-dead-reason": "not_json"}), routing_key="")
        assert await _count(channel, topology.dead_queue) == 4

        code, out, err = await _run_redrive(idle)
        assert code == 0, err
        assert out.strip() == (f"moved 3 dead-lettered deliveries to {topology.queue}; "
                               f"left 1 in {topology.dead_queue} (not_json=1)")
        assert await _count(channel, topology.queue) == 3
        assert await _count(channel, topology.dead_queue) == 1

        idle.start_verifier()
        for conn in conns:
            view = await idle.wait_for(str(conn["id"]), lambda v: v["state"] == "connected", timeout_s=20)
            assert view["events_received"] == 1

        # Run again: nothing more to move; asked to, it moves the one left too.
        code, out, _ = await _run_redrive(idle)
        assert code == 0 and out.startswith("moved 0 dead-lettered deliveries")
        code, out, _ = await _run_redrive(idle, "--reason", "not_json")
        assert code == 0 and out.startswith("moved 1 dead-lettered deliveries") and "left 0" in out
        # It still cannot be processed: the verifier dead-letters it once more (no loop, nothing lost).
        async with asyncio.timeout(20):
            while await _count(channel, topology.dead_queue) != 1:
                await asyncio.sleep(0.05)
