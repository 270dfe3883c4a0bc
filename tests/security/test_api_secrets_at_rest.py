"""Secrets at rest, as someone who reads Redis or the broker: no secret, previous secret or secret-like
setting is there in plaintext, in any key of the deployment's prefix or any queued or dead-lettered
message; the services still verify with them (the receiver opens them on lookup); and a key rotation
re-encrypts everything under the new key."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import orjson
import pytest
import redis.asyncio as aioredis

from shared.broker import Topology
from shared.crypto import Sealer, SecretUnreadable
from shared.store import Store
from tests.providers.flow import hmac_sha
from tests.security.test_api_retention import mentions
from tests.signing import standard_webhooks_headers
from tests.system import System, SystemWith, start_system

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEY_1 = "k1:" + base64.b64encode(b"k1-secrets-key-for-the-tests-000").decode()
KEY_2 = "k2:" + base64.b64encode(b"k2-secrets-key-for-the-tests-000").decode()
EVENT = orjson.dumps({"events": [{"action": "changed", "resource": {"gid": "1"}}]})


@pytest.fixture
async def sealed(system_with: SystemWith) -> AsyncIterator[System]:
    async with system_with(secrets_keys=(KEY_1,)) as running:
        yield running


async def _standard(system: System, conn: dict[str, Any], secret: str) -> int:
    body = orjson.dumps({"type": "invoice.paid", "data": {}})
    status, _ = await system.post_hook(conn["webhook_url"], body,
                                       standard_webhooks_headers(secret, body, f"msg_{uuid.uuid4().hex}"))
    return status


async def _asana(system: System, conn: dict[str, Any], secret: str) -> int:
    headers = {"X-Hook-Signature": hmac_sha(secret, EVENT).hex(), "content-type": "application/json"}
    status, _ = await system.post_hook(conn["webhook_url"], EVENT, headers)
    return status


async def _queued_bodies(amqp_url: str, queues: list[str]) -> list[bytes]:
    """Every message of ``queues`` (headers and body), read and put back."""
    seen: list[bytes] = []
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for name in queues:
            queue = await channel.get_queue(name, ensure=False)
            held = []
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                held.append(message)
                seen.append(message.body + orjson.dumps(message.headers or {}, default=str))
            for message in held:
                await message.nack(requeue=True)
    return seen


async def _connections_with_every_kind_of_secret(system: System) -> tuple[dict[str, dict[str, Any]], list[str]]:
    first, second = "whsec_" + base64.b64encode(b"first-secret-0123456789ab").decode(), \
        "whsec_" + base64.b64encode(b"second-secret-0123456789a").decode()
    learnt = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6-learnt"
    verify_token, client_state = "meta-verify-token-7c1e", "graph-client-state-91fd"
    conns = {
        "rotated": await system.create(secret=first),
        "meta": await system.create("meta", settings={"verify_token": verify_token}),
        "graph": await system.create("msgraph", settings={"client_state": client_state}),
        "asana": await system.create("asana"),
    }
    status, _ = await system.api("POST", f"/v1/connections/{conns['rotated']['id']}/reconnect",
                                 json={"secret": second})
    assert status == 200  # `first` is now the previous secret
    async with system.session.post(conns["asana"]["webhook_url"], data=b"",
                                   headers={"X-Hook-Secret": learnt}) as resp:
        assert resp.status == 200
    conns["rotated"]["secret"], conns["asana"]["secret"] = second, learnt
    generated = [c["secret"] for c in conns.values() if c["secret"] and c is not conns["asana"]]
    status, endpoint = await system.api("POST", "/v1/notification-endpoints",
                                        json={"url": "https://product.example/hooks/status"})
    assert status == 201
    return conns, [first, second, learnt, verify_token, client_state, endpoint["secret"], *generated]


async def test_no_secret_is_stored_or_queued_in_plaintext(
    sealed: System, redis_client: aioredis.Redis, prefix: str, amqp_url: str
) -> None:
    conns, secrets = await _connections_with_every_kind_of_secret(sealed)
    # They still verify: the receiver opens them on lookup (the current secret and the previous one).
    assert await _standard(sealed, conns["rotated"], secrets[1]) == 202
    assert await _standard(sealed, conns["rotated"], secrets[0]) == 202
    assert await _asana(sealed, conns["asana"], secrets[2]) == 202
    for name in ("rotated", "asana"):
        await sealed.wait_for(conns[name]["id"], lambda v: v["state"] == "connected")
    async with sealed.session.get(conns["meta"]["webhook_url"], params={
            "hub.mode": "subscribe", "hub.verify_token": secrets[3], "hub.challenge": "1158201444"}) as resp:
        assert resp.status == 200 and await resp.text() == "1158201444"
    async with sealed.session.get(conns["meta"]["webhook_url"], params={
            "hub.mode": "subscribe", "hub.verify_token": "not-it", "hub.challenge": "1"}) as resp:
        assert resp.status == 403
    # Deliveries waiting in the queue, and one dead-lettered, are scanned too.
    await sealed.stop_verifiers()
    assert await _standard(sealed, conns["rotated"], secrets[1]) == 202
    assert await _asana(sealed, conns["asana"], "not-the-secret") == 401
    topology = Topology(sealed.common["amqp_prefix"], sealed.common["analytics_exchange"])
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await topology.declare(channel)
        queue = await channel.get_queue(topology.queue, ensure=False)
        message = await queue.get(no_ack=False)
        assert message is not None
        await message.reject(requeue=False)  # to the dead-letter queue
    bodies = await _queued_bodies(amqp_url, [topology.queue, topology.dead_queue])
    assert len(bodies) == 2

    for secret in secrets:
        assert await mentions(redis_client, prefix, secret) == [], secret
        assert not [body for body in bodies if secret.encode() in body], secret
    stored = await redis_client.hgetall(f"{prefix}:{{{conns['rotated']['id']}}}:conn")
    assert all(stored[name].startswith("enc1:k1:") for name in ("secret", "prev_secret", "settings"))
    # A sealed value copied to another connection does not open there.
    await redis_client.hset(f"{prefix}:{{{conns['graph']['id']}}}:conn", "secret", stored["secret"])
    with pytest.raises(SecretUnreadable):
        await Store(redis_client, prefix, Sealer((KEY_1,))).get(conns["graph"]["id"])


async def _rotate(redis_url: str, prefix: str, keys: str) -> tuple[int, str]:
    env = {**os.environ, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "SECRETS_KEYS": keys}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scripts.rotate_secret_keys", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, (out + err).decode()


async def test_a_key_rotation_re_encrypts_everything_under_the_new_key(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None
) -> None:
    async with start_system(amqp_url, redis_url, prefix, secrets_keys=(KEY_1,)) as old:
        conns, secrets = await _connections_with_every_kind_of_secret(old)
    code, out = await _rotate(redis_url, prefix, f"{KEY_2},{KEY_1}")
    assert code == 0, out
    assert out.strip() == "re-encrypted 4 of 4 connections and 1 of 1 notification endpoints under key k2"
    code, out = await _rotate(redis_url, prefix, f"{KEY_2},{KEY_1}")
    assert out.strip() == "re-encrypted 0 of 4 connections and 0 of 1 notification endpoints under key k2"
    for conn in conns.values():
        stored = await redis_client.hgetall(f"{prefix}:{{{conn['id']}}}:conn")
        for name in ("secret", "prev_secret", "settings"):
            assert not stored.get(name) or stored[name].startswith("enc1:k2:"), (name, stored.get(name))
    for secret in secrets:
        assert await mentions(redis_client, prefix, secret) == [], secret

    # The old key dropped: everything still verifies, with the new key alone.
    async with start_system(amqp_url, redis_url, prefix, secrets_keys=(KEY_2,)) as new:
        for conn in conns.values():  # this system's receiver listens elsewhere
            conn["webhook_url"] = f"{new.receiver_url}/hooks/{conn['id']}"
        assert await _standard(new, conns["rotated"], secrets[0]) == 202  # the previous secret
        assert await _asana(new, conns["asana"], secrets[2]) == 202
        for name in ("rotated", "asana"):
            await new.wait_for(conns[name]["id"], lambda v: v["state"] == "connected")
    # Without the key a value was sealed with, the tool says so and changes nothing.
    code, out = await _rotate(redis_url, prefix, KEY_1)
    assert code == 1 and "k2" in out and "SECRETS_KEYS" in out


async def test_a_secret_sealed_with_a_dropped_key_is_a_clear_503_not_a_500(
    sealed: System, redis_client: aioredis.Redis, prefix: str
) -> None:
    conn = await sealed.create()
    key = f"{prefix}:{{{conn['id']}}}:conn"
    stored = await redis_client.hget(key, "secret")
    assert stored.startswith("enc1:k1:")
    # As if SECRETS_KEYS had lost the key this secret was sealed with.
    await redis_client.hset(key, "secret", stored.replace("enc1:k1:", "enc1:gone:", 1))
    body = orjson.dumps({"type": "invoice.paid", "data": {}})
    headers = standard_webhooks_headers(conn["secret"], body, f"msg_{uuid.uuid4().hex}")
    async with sealed.session.post(conn["webhook_url"], data=body, headers=headers) as resp:
        answer = await resp.json(content_type=None)
        assert resp.status == 503, answer
        assert answer["error"]["code"] == "secret_unreadable"
        assert resp.headers["Retry-After"]
        assert conn["secret"] not in orjson.dumps(answer).decode()
