"""Strangers cannot flip the display: ``failing`` ("Fix signing secret") means sustained rejection
without verified traffic, at least ``FAILING_AFTER_REJECTED`` rejected deliveries in a row since the
last verified one. An attacker who forges a request after every real event never shows it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson

from shared.models import FAILING_AFTER_REJECTED
from tests.signing import standard_webhooks_headers
from tests.system import System

EVENT = orjson.dumps({"type": "invoice.paid", "data": {"amount": 1200}})
FORGER_SECRET = "whsec_" + "Zm9yZ2VyLXNlY3JldC1ub3QtdGhlLXJlYWwtb25lIQ=="


async def send(system: System, conn: dict[str, Any], secret: str) -> int:
    headers = standard_webhooks_headers(secret, EVENT, f"msg_{uuid.uuid4().hex}")
    status, _ = await system.post_hook(conn["webhook_url"], EVENT, headers)
    return status


async def deliveries_stored(system: System, cid: str, count: int) -> dict[str, Any]:
    for _ in range(400):
        status, data = await system.api("GET", f"/v1/connections/{cid}/deliveries")
        assert status == 200
        if len(data["deliveries"]) >= count:
            return await system.get(cid)
        await asyncio.sleep(0.025)
    raise AssertionError(f"{count} deliveries were not stored")


async def test_one_forgery_per_real_event_never_shows_failing(system: System) -> None:
    conn = await system.create()
    sent = 0
    for _ in range(3 * FAILING_AFTER_REJECTED):
        assert await send(system, conn, conn["secret"]) == 202
        assert await send(system, conn, FORGER_SECRET) == 401
        sent += 2
        view = await deliveries_stored(system, conn["id"], sent)
        assert (view["state"], view["health"], view["display"]) == ("connected", "ok", "connected"), view
        assert view["cta"]["label"] == "Connected"
    assert view["last_error"]["code"] == "signature_mismatch"  # the forgeries are still recorded


async def test_fewer_forgeries_than_the_threshold_between_real_events_never_show_failing(system: System) -> None:
    conn = await system.create()
    sent = 0
    for _ in range(3):
        assert await send(system, conn, conn["secret"]) == 202
        for _ in range(FAILING_AFTER_REJECTED - 1):
            assert await send(system, conn, FORGER_SECRET) == 401
        sent += FAILING_AFTER_REJECTED
        view = await deliveries_stored(system, conn["id"], sent)
        assert (view["health"], view["display"]) == ("ok", "connected"), view


async def test_sustained_rejection_without_verified_traffic_shows_failing(system: System) -> None:
    conn = await system.create()
    assert await send(system, conn, conn["secret"]) == 202
    for i in range(1, FAILING_AFTER_REJECTED + 1):
        assert await send(system, conn, FORGER_SECRET) == 401
        view = await deliveries_stored(system, conn["id"], 1 + i)
        expected = "failing" if i >= FAILING_AFTER_REJECTED else "ok"
        assert view["health"] == expected, (i, view)
    assert view["display"] == "failing" and view["cta"]["label"] == "Fix signing secret"
    # A verified event ends it at once.
    assert await send(system, conn, conn["secret"]) == 202
    view = await deliveries_stored(system, conn["id"], FAILING_AFTER_REJECTED + 2)
    assert (view["health"], view["display"]) == ("ok", "connected")
