"""Test hops against a stranger with the webhook URL: forgeries sent after the provider's event passed a
test window never take its hops over (they keep saying which delivery passed, and that it verified),
and nothing sent before a window opened, or after it closed, is written into it."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from typing import Any

import orjson

from tests.signing import standard_webhooks_headers
from tests.system import System

EVENT = orjson.dumps({"type": "ping"})


async def _post(system: System, conn: dict[str, Any], secret: str) -> int:
    headers = standard_webhooks_headers(secret, EVENT, f"msg_{uuid.uuid4().hex}")
    status, _ = await system.post_hook(conn["webhook_url"], EVENT, headers)
    return status


def _forger() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


async def test_forgeries_never_take_over_the_hops_of_a_passed_test(system: System) -> None:
    conn = await system.create()
    assert await _post(system, conn, _forger()) == 401  # before any window: never in one
    status, test = await system.api("POST", f"/v1/connections/{conn['id']}/tests")
    assert status == 201 and test["hops"]["last"] is None
    assert await _post(system, conn, conn["secret"]) == 202
    view = await system.wait_for(conn["id"], lambda v: v["last_test"]["state"] == "passed"
                                 and v["last_test"]["hops"]["last"] == "pushed")
    passed = view["last_test"]["hops"]
    for _ in range(5):
        assert await _post(system, conn, _forger()) == 401
    await system.wait_for(conn["id"], lambda v: (v["last_error"] or {}).get("code") == "signature_mismatch")
    await asyncio.sleep(0.5)
    status, again = await system.api("GET", f"/v1/connections/{conn['id']}/tests/{test['id']}")
    assert status == 200 and again["state"] == "passed"
    assert again["hops"] == passed and passed["rejected"] is None and passed["verified"] is not None


async def test_a_new_window_carries_nothing_of_what_came_before_it(system: System) -> None:
    conn = await system.create()
    _, first = await system.api("POST", f"/v1/connections/{conn['id']}/tests")
    assert await _post(system, conn, _forger()) == 401
    await system.wait_for(conn["id"], lambda v: v["last_test"]["hops"]["last"] == "pushed")
    _, second = await system.api("POST", f"/v1/connections/{conn['id']}/tests")
    await asyncio.sleep(0.5)
    status, now = await system.api("GET", f"/v1/connections/{conn['id']}/tests/{second['id']}")
    assert status == 200 and now["hops"]["last"] is None and now["hops"]["delivery_id"] is None
