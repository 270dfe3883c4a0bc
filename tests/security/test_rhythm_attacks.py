"""The learned rhythm (learned silence) against a stranger with the webhook URL and one captured signed
request: only verified, first-seen events teach it. Forgeries, replays of the captured request and
handshake-less junk change neither the gaps learnt nor the quiet limit, so a stranger can neither keep
a silent connection looking alive with them nor make a healthy one look silent."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid

import orjson
import redis.asyncio as aioredis

from tests.signing import standard_webhooks_headers
from tests.system import System

RHYTHM = ("gap_count", "gap_mean_ms", "gap_var_ms2", "quiet_after_ms", "last_event_at", "events_received")


async def test_only_verified_first_seen_events_teach_the_rhythm(
    system: System, redis_client: aioredis.Redis, prefix: str
) -> None:
    conn = await system.create()
    key = f"{prefix}:{{{conn['id']}}}:conn"
    body = orjson.dumps({"type": "invoice.paid"})
    captured = standard_webhooks_headers(conn["secret"], body, "msg_captured")
    for i in range(4):  # the provider's own events
        headers = captured if i == 0 else standard_webhooks_headers(conn["secret"], body, f"msg_{i}")
        status, _ = await system.post_hook(conn["webhook_url"], body, headers)
        assert status == 202
    await system.wait_for(conn["id"], lambda v: v["events_received"] == 4)
    before = await redis_client.hmget(key, RHYTHM)
    assert int(before[0]) == 3  # three gaps learnt

    forger = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    for _ in range(5):
        status, _ = await system.post_hook(conn["webhook_url"], body,
                                           standard_webhooks_headers(forger, body, f"msg_{uuid.uuid4().hex}"))
        assert status == 401
    for _ in range(5):  # the captured request again: accepted (it verifies) but the same event
        status, _ = await system.post_hook(conn["webhook_url"], body, captured)
        assert status == 202
    status, _ = await system.post_hook(conn["webhook_url"], b"not json", {"Content-Type": "application/json"})
    assert status == 401
    # One more event of the provider's, then a moment for anything still queued: the attack's requests
    # were all applied by then (the rejections are listed), and only that event taught a gap.
    status, _ = await system.post_hook(conn["webhook_url"], body,
                                       standard_webhooks_headers(conn["secret"], body, "msg_last"))
    assert status == 202
    await system.wait_for(conn["id"], lambda v: v["events_received"] == 5)
    await asyncio.sleep(0.5)
    status, data = await system.api("GET", f"/v1/connections/{conn['id']}/deliveries")
    assert status == 200 and sum(1 for d in data["deliveries"] if d["outcome"] == "rejected") == 6
    after = await redis_client.hmget(key, RHYTHM)
    assert int(after[0]) == 4 and int(after[5]) == 5, (before, after)
