"""``secret_of_other_connection``: a request that fails its connection's secret but verifies with the secret
of another connection of the same account and provider (the two URLs were pasted the wrong way round).
Real services, signed by the ``standardwebhooks`` package; never across accounts, never past the cap."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from tests.signing import standard_webhooks_headers
from tests.system import System, SystemWith, start_system

BODY = orjson.dumps({"type": "invoice.paid", "data": {"amount": 1200}})


async def send(system: System, conn: dict[str, Any], secret: str) -> tuple[int, Any]:
    headers = standard_webhooks_headers(secret, BODY, f"msg_{uuid.uuid4().hex}")
    return await system.post_hook(conn["webhook_url"], BODY, headers)


async def last_rejection(system: System, cid: str) -> dict[str, Any]:
    view = await system.wait_for(cid, lambda v: v["last_error"] is not None)
    assert view["state"] == "pending"
    status, data = await system.api("GET", f"/v1/connections/{cid}/deliveries")
    assert status == 200
    return {"last_error": view["last_error"], "delivery": data["deliveries"][0]}


async def test_the_secret_of_a_sibling_connection_is_named(system: System) -> None:
    billing = await system.create(account_id="acct-swap")
    shipping = await system.create(account_id="acct-swap")
    await system.create(account_id="acct-swap", provider="github")  # another provider: never a candidate
    status, reply = await send(system, billing, shipping["secret"])
    assert status == 401
    assert reply["error"]["code"] == "secret_of_other_connection"
    assert shipping["id"] not in orjson.dumps(reply).decode()  # the sender is not told which one
    seen = await last_rejection(system, billing["id"])
    assert seen["last_error"]["code"] == "secret_of_other_connection"
    assert shipping["id"] in seen["last_error"]["message"]
    assert "pasted in the other's dashboard" in seen["last_error"]["message"]
    assert seen["delivery"]["other_connection_id"] == shipping["id"]
    status, data = await system.api("GET", f"/v1/connections/{billing['id']}/held")
    assert status == 200
    assert [(h["reason"], h["other_connection_id"]) for h in data["held"]] == [
        ("secret_of_other_connection", shipping["id"])]


async def test_never_across_accounts(system: System) -> None:
    mine = await system.create(account_id="acct-one")
    theirs = await system.create(account_id="acct-two")
    status, reply = await send(system, mine, theirs["secret"])
    assert status == 401 and reply["error"]["code"] == "signature_mismatch"
    seen = await last_rejection(system, mine["id"])
    assert seen["last_error"]["code"] == "signature_mismatch"
    assert theirs["id"] not in orjson.dumps(seen).decode()
    assert "other_connection_id" not in seen["delivery"]


async def test_a_disconnected_sibling_is_not_a_candidate(system: System) -> None:
    conn = await system.create(account_id="acct-gone")
    gone = await system.create(account_id="acct-gone")
    await system.api("DELETE", f"/v1/connections/{gone['id']}")
    status, reply = await send(system, conn, gone["secret"])
    assert status == 401 and reply["error"]["code"] == "signature_mismatch"


@pytest.fixture
async def capped(system_with: SystemWith) -> AsyncIterator[System]:
    async with system_with(receiver={"other_secret_candidates": 2}) as running:
        yield running


async def test_only_a_capped_number_of_candidates_is_tried(capped: System) -> None:
    system = capped
    conn = await system.create(account_id="acct-many")
    siblings = [await system.create(account_id="acct-many") for _ in range(4)]
    # The candidates are taken in id order: the two with the smallest ids are tried, the others never.
    ordered = sorted(siblings, key=lambda c: c["id"])
    status, reply = await send(system, conn, ordered[0]["secret"])
    assert status == 401 and reply["error"]["code"] == "secret_of_other_connection"
    status, reply = await send(system, conn, ordered[-1]["secret"])
    assert status == 401 and reply["error"]["code"] == "signature_mismatch"


async def test_the_other_connection_outside_the_rejected_budget_is_not_looked_for(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None
) -> None:
    async with start_system(amqp_url, redis_url, prefix, receiver={"rejected_burst": 1}) as system:
        conn = await system.create(account_id="acct-budget")
        sibling = await system.create(account_id="acct-budget")
        status, reply = await send(system, conn, sibling["secret"])
        assert status == 401 and reply["error"]["code"] == "secret_of_other_connection"
        status, reply = await send(system, conn, sibling["secret"])
        assert status == 429 and reply["error"]["code"] == "too_many_rejected"
