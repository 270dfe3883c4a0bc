"""Asana's learnt secret: set once, by the receiver, in one atomic compare-and-set on the placeholder.

Two handshakes racing (the real one and a stranger's) cannot both win: exactly one is answered 200 and
its secret is kept, the other gets 409 ``secret_already_learnt``. The secret never travels in a delivery
message, so it can never sit in the queue or the dead-letter queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import orjson
import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.store import Store
from tests.providers.flow import hmac_sha
from tests.system import System, SystemWith

EVENT = orjson.dumps({"events": [{"action": "changed", "resource": {"gid": "1", "resource_type": "task"}}]})


async def handshake(system: System, conn: dict[str, Any], secret: str) -> tuple[int, Any]:
    async with system.session.post(conn["webhook_url"], data=b"", headers={"X-Hook-Secret": secret}) as resp:
        body = await resp.read()
        return resp.status, (orjson.loads(body) if resp.status != 200 else resp.headers.get("X-Hook-Secret"))


async def event(system: System, conn: dict[str, Any], secret: str) -> int:
    headers = {"X-Hook-Signature": hmac_sha(secret, EVENT).hex(), "content-type": "application/json"}
    async with system.session.post(conn["webhook_url"], data=EVENT, headers=headers) as resp:
        return resp.status


async def test_two_racing_handshakes_exactly_one_wins(system: System) -> None:
    for round_ in range(8):
        conn = await system.create("asana")
        real, stranger = f"{round_:02d}real-asana-secret-4f1b7c2a9d3e8f60", f"{round_:02d}stranger-secret-0000000000000"
        answers = await asyncio.gather(handshake(system, conn, real), handshake(system, conn, stranger))
        statuses = sorted(status for status, _ in answers)
        assert statuses == [200, 409], answers
        winner, loser = (real, stranger) if answers[0][0] == 200 else (stranger, real)
        refused = next(body for status, body in answers if status == 409)
        assert refused["error"]["code"] == "secret_already_learnt"
        view = await system.get(conn["id"])
        assert view["secret_learnt_at"] is not None
        assert await event(system, conn, loser) == 401  # only the winner's secret verifies
        assert await event(system, conn, winner) == 202
        await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
        # The same secret again (Asana retrying its handshake) is answered; another is not.
        assert (await handshake(system, conn, winner))[0] == 200
        assert (await handshake(system, conn, loser))[0] == 409


@pytest.fixture
async def stopped(system_with: SystemWith) -> AsyncIterator[System]:
    """The system with no verifier running: messages stay in the queue to be read."""
    async with system_with(verifiers=0) as running:
        yield running


async def _drain(amqp_url: str, queue_name: str) -> list[bytes]:
    """Every message of a queue (read, then returned to it)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name, ensure=False)
        found: list[aio_pika.abc.AbstractIncomingMessage] = []
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            found.append(message)
        bodies = [m.body for m in found]
        for message in found:
            await message.nack(requeue=True)
        return bodies


async def test_the_learnt_secret_never_travels_in_a_message(
    stopped: System, amqp_url: str, prefix: str, redis_client: aioredis.Redis
) -> None:
    secret = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b-plaintext"
    conn = await stopped.create("asana")
    assert (await handshake(stopped, conn, secret))[0] == 200
    # Stored at once, by the receiver itself.
    stored = await redis_client.hget(Keys(prefix).conn(conn["id"]), "secret")
    assert stored and stored.startswith("enc1:") and secret not in stored  # sealed at rest
    credentials = await Store(redis_client, prefix).get_credentials(conn["id"])
    assert credentials is not None and credentials.secret == secret
    queued = await _drain(amqp_url, f"{prefix}.deliveries")
    assert len(queued) == 1 and orjson.loads(queued[0])["handshake"] is True
    assert secret.encode() not in queued[0]
    # A message the verifier cannot apply (its connection is gone) is dead-lettered as it was.
    await redis_client.delete(Keys(prefix).conn(conn["id"]))
    stopped.start_verifier()
    for _ in range(200):
        dead = await _drain(amqp_url, f"{prefix}.deliveries.dead")
        if dead:
            break
        await asyncio.sleep(0.05)
    assert len(dead) == 1
    assert secret.encode() not in dead[0] and b"learnt_secret" not in dead[0]
