"""Closing the loop, end to end: a connection set up with the wrong secret rejects (and holds) the
provider's event, fails at its deadline, and once reconnected with the right secret connects from the
held event, with nothing resent; the product's endpoint hears ``connection.failed`` then
``connection.recovered``, signed per Standard Webhooks (checked with the ``standardwebhooks`` package).

Real receiver, verifier, status API and notifier, on the real broker and Redis; the product is a local
aiohttp server. The times it takes are printed (docs/RELIABILITY.md has them), not asserted."""

from __future__ import annotations

import asyncio
import base64
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import orjson
from standardwebhooks import Webhook

from tests.notifier.conftest import ProductReceiver, register
from tests.signing import standard_webhooks_headers
from tests.system import System

ROUNDS = 5


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float = 20) -> float:
    """Poll ``check`` every 5 ms; the monotonic time it first held."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await check():
            return time.monotonic()
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.005)


async def _one_round(system: System, product: ProductReceiver, path: str, endpoint_secret: str
                     ) -> tuple[float, float]:
    conn = await system.create(timeout_s=1)
    cid = conn["id"]
    provider_secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()  # not the one pasted
    body = orjson.dumps({"type": "invoice.paid", "data": {"amount": 1200}})
    msg_id = f"msg_{uuid.uuid4().hex}"
    status, reply = await system.post_hook(conn["webhook_url"], body,
                                           standard_webhooks_headers(provider_secret, body, msg_id))
    assert status == 401 and reply["error"]["code"] == "signature_mismatch"
    failed = await system.wait_for(cid, lambda v: v["state"] == "failed", timeout_s=15)
    assert failed["reason"] == "deadline_bad_signatures"
    await product.wait_event(path, "connection.failed", cid)
    status, data = await system.api("GET", f"/v1/connections/{cid}/held")
    assert status == 200 and [h["reason"] for h in data["held"]] == ["signature_mismatch"]

    reconnect_at = time.monotonic()
    status, _ = await system.api("POST", f"/v1/connections/{cid}/reconnect", json={"secret": provider_secret})
    assert status == 200

    async def connected() -> bool:
        return (await system.get(cid))["state"] == "connected"

    async def notified() -> bool:
        return any(r.event.get("type") == "connection.recovered" and r.event["data"]["id"] == cid
                   for r in product.at(path))

    connected_at = await _until(connected)
    notified_at = await _until(notified)

    view = await system.get(cid)
    assert view["events_received"] == 1 and view["reason"] == "verified_event"
    status, data = await system.api("GET", f"/v1/connections/{cid}/deliveries")
    assert [(d["outcome"], d.get("recovered", False)) for d in data["deliveries"]] == [
        ("verified", True), ("rejected", False)]
    assert data["deliveries"][0]["event_id"] == msg_id  # the provider's event, never sent again
    mine = [r for r in product.at(path) if r.event["data"]["id"] == cid]
    kinds = [Webhook(endpoint_secret).verify(r.body, r.headers)["type"] for r in mine]
    assert kinds == ["connection.failed", "connection.recovered"]
    return connected_at - reconnect_at, notified_at - connected_at


async def test_wrong_secret_then_reconnect_recovers_from_the_held_event(notified: System,
                                                                       product: ProductReceiver) -> None:
    endpoint = await register(notified, product.url("product"), account_id="acct-test")
    figures = [await _one_round(notified, product, "product", endpoint["secret"]) for _ in range(ROUNDS)]
    to_connected = sorted(a * 1000 for a, _ in figures)
    to_notified = sorted(b * 1000 for _, b in figures)
    print(f"\nheld-event recovery, {ROUNDS} rounds (ms; 5 ms polling):"
          f"\n  reconnect -> connected:        median {statistics.median(to_connected):.0f}, "
          f"max {to_connected[-1]:.0f}"
          f"\n  connected -> product notified: median {statistics.median(to_notified):.0f}, "
          f"max {to_notified[-1]:.0f}")
