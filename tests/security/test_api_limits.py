"""Limits per principal, as someone holding a leaked browser token who tries to exhaust the service:
open streams without end, open test windows in a loop, grow a connection's test archive forever. Each
limit answers 429 with a reason code and ``Retry-After``; the product backend is not limited."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.system import TOKEN, System, start_system


@pytest.fixture
async def limited(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None
) -> AsyncIterator[System]:
    limits = {"max_streams_per_token": 2, "max_streams_per_account": 3, "tests_per_minute": 3,
              "tests_kept": 4, "sse_heartbeat_s": 0.2}
    async with start_system(amqp_url, redis_url, prefix, status_api=limits) as running:
        yield running


class Streams:
    """Streams held open by this test (each read up to its ``ready`` event)."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.open: list[aiohttp.ClientResponse] = []

    async def open_one(self, path: str, token: str) -> tuple[int, dict[str, str], Any]:
        resp = await self.system.session.get(self.system.api_url + path,
                                             headers={"Authorization": f"Bearer {token}"})
        if resp.status != 200:
            body = await resp.json(content_type=None)
            resp.release()
            return resp.status, dict(resp.headers), body
        async for line in resp.content:
            if line.startswith(b"event: ready"):
                break
        self.open.append(resp)
        return 200, dict(resp.headers), None

    def close(self, resp: aiohttp.ClientResponse) -> None:
        self.open.remove(resp)
        resp.close()


@contextlib.asynccontextmanager
async def streams(system: System) -> AsyncIterator[Streams]:
    held = Streams(system)
    try:
        yield held
    finally:
        for resp in held.open:
            resp.close()


def assert_429(status: int, headers: dict[str, str], body: Any, code: str, max_s: int) -> None:
    assert status == 429, body
    assert body["error"]["code"] == code
    assert 1 <= int(headers["Retry-After"]) <= max_s


async def test_open_streams_are_limited_per_browser_token_and_per_account(limited: System) -> None:
    conn = await limited.create(account_id="acct-a")
    first, second = await limited.browser_token("acct-a"), await limited.browser_token("acct-a", ttl_s=600)
    async with streams(limited) as held:
        assert (await held.open_one("/v1/accounts/acct-a/stream", first))[0] == 200
        assert (await held.open_one(f"/v1/connections/{conn['id']}/stream", first))[0] == 200
        assert_429(*await held.open_one("/v1/accounts/acct-a/stream", first), "too_many_streams", 60)
        # Another token of the account may open one more: then the account is at its limit.
        assert (await held.open_one("/v1/accounts/acct-a/stream", second))[0] == 200
        assert_429(*await held.open_one("/v1/accounts/acct-a/stream", second), "too_many_streams", 60)
        # Another account is not affected, nor is the product backend's service token.
        other = await limited.browser_token("acct-b")
        assert (await held.open_one("/v1/accounts/acct-b/stream", other))[0] == 200
        for _ in range(4):
            assert (await held.open_one("/v1/accounts/acct-a/stream", TOKEN))[0] == 200

        # A stream that ends gives its place back.
        held.close(held.open[0])
        async with asyncio.timeout(15):
            while (result := await held.open_one("/v1/accounts/acct-a/stream", first))[0] != 200:
                assert_429(*result, "too_many_streams", 60)
                await asyncio.sleep(0.1)


async def test_test_windows_are_limited_per_connection_per_minute(limited: System) -> None:
    conn = await limited.create(account_id="acct-a")
    spare = await limited.create(account_id="acct-a")
    token = await limited.browser_token("acct-a")
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{limited.api_url}/v1/connections/{conn['id']}/tests"
    for _ in range(3):
        async with limited.session.post(url, headers=headers, json={}) as resp:
            assert resp.status == 201
    async with limited.session.post(url, headers=headers, json={}) as resp:
        assert_429(resp.status, dict(resp.headers), await resp.json(), "too_many_tests", 60)
    # Per connection, whoever asks: the service token is counted in the same window.
    status, data = await limited.api("POST", f"/v1/connections/{conn['id']}/tests", json={})
    assert status == 429 and data["error"]["code"] == "too_many_tests"
    status, _ = await limited.api("POST", f"/v1/connections/{spare['id']}/tests", json={})
    assert status == 201


async def test_the_test_archive_keeps_the_latest_windows_only(
    limited: System, redis_client: aioredis.Redis, prefix: str
) -> None:
    conn = await limited.create(account_id="acct-a")
    ids = []
    for _ in range(8):
        await redis_client.delete(f"{prefix}:{{{conn['id']}}}:tests_rate")  # past the per-minute limit
        status, test = await limited.api("POST", f"/v1/connections/{conn['id']}/tests", json={})
        assert status == 201, test
        ids.append(test["id"])
    archive = f"{prefix}:{{{conn['id']}}}:tests"
    assert await redis_client.hlen(archive) == 4  # the current window, plus the latest 4 replaced
    assert set(await redis_client.hkeys(archive)) == set(ids[3:7])
    for old in ids[:3]:
        status, data = await limited.api("GET", f"/v1/connections/{conn['id']}/tests/{old}")
        assert status == 404 and data["error"]["code"] == "test_not_found"
    for kept in ids[3:]:
        status, data = await limited.api("GET", f"/v1/connections/{conn['id']}/tests/{kept}")
        assert status == 200, data
