"""Retention: a connection can be erased with everything about it (service token only), and a
disconnected one is erased by itself after ``DISCONNECTED_RETENTION_S``, so an account's list (and
its stream) does not grow with every connection ever made. Checked by scanning every Redis key of the
test's prefix, names and contents."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from tests.signing import standard_webhooks_headers
from tests.system import System, SystemWith


async def mentions(redis_client: aioredis.Redis, prefix: str, needle: str) -> list[str]:
    """Every key of the prefix whose name or content mentions ``needle``."""
    found = []
    async for key in redis_client.scan_iter(match=f"{prefix}:*", count=1000):
        kind = await redis_client.type(key)
        if kind == "string":
            content: Any = await redis_client.get(key)
        elif kind == "hash":
            content = await redis_client.hgetall(key)
        elif kind == "list":
            content = await redis_client.lrange(key, 0, -1)
        elif kind == "set":
            content = sorted(await redis_client.smembers(key))
        elif kind == "zset":
            content = await redis_client.zrange(key, 0, -1)
        elif kind == "stream":
            content = await redis_client.xrange(key)
        else:
            content = kind
        if needle in key or needle in str(content):
            found.append(key)
    return found


async def _event(system: System, conn: dict[str, Any], secret: str | None = None) -> int:
    body = orjson.dumps({"type": "invoice.paid", "data": {}})
    headers = standard_webhooks_headers(secret or conn["secret"], body, f"msg_{uuid.uuid4().hex}")
    status, _ = await system.post_hook(conn["webhook_url"], body, headers)
    return status


async def test_a_purge_erases_a_connection_and_everything_about_it(
    system: System, redis_client: aioredis.Redis, prefix: str
) -> None:
    conn = await system.create(account_id="acct-p")
    kept = await system.create(account_id="acct-p")
    cid = conn["id"]
    assert await _event(system, conn) == 202
    await system.wait_for(cid, lambda v: v["state"] == "connected")
    assert await _event(system, conn, secret=(await system.create())["secret"]) == 401
    for _ in range(2):
        assert (await system.api("POST", f"/v1/connections/{cid}/tests", json={}))[0] == 201
    status, _ = await system.api("POST", f"/v1/connections/{cid}/reconnect",
                                 json={"secret": "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
    assert status == 200
    await system.wait_for(cid, lambda v: len(v["last_error"] or {}) > 0 or v["events_received"] >= 1)
    assert len(await mentions(redis_client, prefix, cid)) >= 6  # hash, deliveries, dedupe keys, tests, indexes…

    token = await system.browser_token("acct-p")
    async with system.session.post(f"{system.api_url}/v1/connections/{cid}/purge",
                                   headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 404  # a browser token may not, and does not learn the route exists
    async with system.session.post(f"{system.api_url}/v1/connections/{cid}/purge", headers=system.auth) as resp:
        assert resp.status == 204

    assert await mentions(redis_client, prefix, cid) == []
    status, data = await system.api("GET", f"/v1/connections/{cid}")
    assert (status, data["error"]["code"]) == (404, "connection_not_found")
    status, data = await system.api("GET", "/v1/connections", params={"account_id": "acct-p"})
    assert [c["id"] for c in data["connections"]] == [kept["id"]]
    assert (await system.api("POST", f"/v1/connections/{cid}/purge"))[0] == 404
    # The receiver forgets it too (its cache hears the change): the webhook URL is unknown now.
    async with asyncio.timeout(10):
        while await _event(system, conn) != 404:
            await asyncio.sleep(0.05)
    counts = {k: int(v) for k, v in (await redis_client.hgetall(f"{prefix}:state_counts")).items() if int(v)}
    assert counts == {"pending": 2}  # the kept one, and the one whose secret signed the bad event


@pytest.fixture
async def short_retention(system_with: SystemWith) -> AsyncIterator[System]:
    async with system_with(status_api={"disconnected_retention_s": 1}) as running:
        yield running


async def test_disconnected_connections_are_purged_after_their_retention(
    short_retention: System, redis_client: aioredis.Redis, prefix: str
) -> None:
    system = short_retention
    back, gone, live = [await system.create(account_id="acct-r") for _ in range(3)]
    assert (await system.api("DELETE", f"/v1/connections/{back['id']}"))[0] == 200
    assert (await system.api("POST", f"/v1/connections/{back['id']}/reconnect", json={}))[0] == 200
    status, view = await system.api("DELETE", f"/v1/connections/{gone['id']}")
    assert status == 200 and view["state"] == "disconnected"
    # Still listed while its retention lasts, then gone from the list and from Redis.
    async with asyncio.timeout(20):
        while True:
            _, data = await system.api("GET", "/v1/connections", params={"account_id": "acct-r"})
            ids = {c["id"] for c in data["connections"]}
            if gone["id"] not in ids:
                break
            await asyncio.sleep(0.1)
    assert ids == {back["id"], live["id"]}  # reconnected before its retention ended: kept
    assert await mentions(redis_client, prefix, gone["id"]) == []
    assert (await system.get(back["id"]))["state"] == "pending"
