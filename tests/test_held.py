"""Held deliveries: a rejected request is kept (sealed) and verified again after a fix, through all three
services on the real broker and Redis, signed by the ``standardwebhooks`` package. And the attacks: a
forgery never verifies later, a flood stays within the bounds, the body never leaves the sealed store."""

from __future__ import annotations

import base64
import logging
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import orjson
import pytest
import redis.asyncio as aioredis

from tests.signing import standard_webhooks_headers
from tests.system import System, SystemWith, start_system


def new_secret() -> str:
    """A secret as the provider's dashboard shows it (not one of ours)."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def event(marker: str = "") -> bytes:
    return orjson.dumps({"type": "invoice.paid", "data": {"amount": 1200, "note": marker}})


async def send(system: System, conn: dict[str, Any], secret: str, body: bytes, msg_id: str | None = None) -> int:
    headers = standard_webhooks_headers(secret, body, msg_id or f"msg_{uuid.uuid4().hex}")
    status, _ = await system.post_hook(conn["webhook_url"], body, headers)
    return status


async def held(system: System, cid: str) -> list[dict[str, Any]]:
    status, data = await system.api("GET", f"/v1/connections/{cid}/held")
    assert status == 200, data
    return data["held"]  # type: ignore[no-any-return]


async def deliveries(system: System, cid: str) -> list[dict[str, Any]]:
    status, data = await system.api("GET", f"/v1/connections/{cid}/deliveries")
    assert status == 200, data
    return data["deliveries"]  # type: ignore[no-any-return]


async def test_a_held_delivery_connects_after_a_reconnect_with_the_right_secret(system: System) -> None:
    conn = await system.create()
    provider_secret = new_secret()  # the person pasted another secret than the provider signs with
    assert await send(system, conn, provider_secret, event(), "msg_first") == 401
    [entry] = await held(system, conn["id"])
    assert entry["reason"] == "signature_mismatch"
    assert entry["size"] > len(event()) and entry["received_at"] is not None
    await system.wait_for(conn["id"], lambda v: v["last_error"] is not None)
    [rejected] = await deliveries(system, conn["id"])
    assert entry["id"] == rejected["id"]

    status, _ = await system.api("POST", f"/v1/connections/{conn['id']}/reconnect", json={"secret": provider_secret})
    assert status == 200
    view = await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
    assert view["events_received"] == 1
    assert await held(system, conn["id"]) == []
    recovered, again = await deliveries(system, conn["id"])
    assert recovered["outcome"] == "verified" and recovered["recovered"] is True
    assert recovered["recovered_from"] == rejected["id"] and recovered["event_id"] == "msg_first"
    assert again["outcome"] == "rejected" and "recovered" not in again

    # The provider's own retry of the same event afterwards is the same event: counted once (and not
    # listed); a new event after it is.
    assert await send(system, conn, provider_secret, event(), "msg_first") == 202
    assert await send(system, conn, provider_secret, event(), "msg_second") == 202
    view = await system.wait_for(conn["id"], lambda v: v["events_received"] == 2)
    assert [d["event_id"] for d in await deliveries(system, conn["id"])] == ["msg_second", "msg_first", None]
    status, data = await system.api("POST", f"/v1/connections/{conn['id']}/reverify")
    assert status == 200 and data == {"checked": 0, "recovered": 0, "still_rejected": 0}


async def test_a_forgery_held_then_verified_with_another_wrong_secret_stays_rejected(system: System) -> None:
    conn = await system.create()
    forger, fixed = new_secret(), new_secret()
    assert await send(system, conn, forger, event()) == 401
    await system.wait_for(conn["id"], lambda v: v["last_error"] is not None)
    status, _ = await system.api("POST", f"/v1/connections/{conn['id']}/reconnect", json={"secret": fixed})
    assert status == 200
    status, data = await system.api("POST", f"/v1/connections/{conn['id']}/reverify")
    assert status == 200
    assert data == {"checked": 1, "recovered": 0, "still_rejected": 1}
    assert len(await held(system, conn["id"])) == 1
    view = await system.get(conn["id"])
    assert view["state"] == "pending" and view["events_received"] == 0
    assert [d["outcome"] for d in await deliveries(system, conn["id"])] == ["rejected"]


async def test_timestamps_are_judged_at_the_receipt_not_at_the_reverification(system: System) -> None:
    conn = await system.create()
    provider_secret = new_secret()
    body = event()
    stale = standard_webhooks_headers(provider_secret, body, "msg_stale", skew_s=-3600)
    status, reply = await system.post_hook(conn["webhook_url"], body, stale)
    assert status == 401 and reply["error"]["code"] == "signature_mismatch"
    assert await send(system, conn, provider_secret, event("fresh"), "msg_fresh") == 401
    status, _ = await system.api("POST", f"/v1/connections/{conn['id']}/reconnect", json={"secret": provider_secret})
    assert status == 200
    await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
    # The stale one was an hour old when it arrived: still too old, judged then, so it stays held.
    [still] = await held(system, conn["id"])
    assert still["reason"] == "signature_mismatch"
    recovered = [d for d in await deliveries(system, conn["id"]) if d.get("recovered")]
    assert [d["event_id"] for d in recovered] == ["msg_fresh"]


async def test_a_browser_token_may_reverify_its_own_account_only(system: System) -> None:
    conn = await system.create()
    assert await send(system, conn, new_secret(), event()) == 401
    own = await system.browser_token("acct-test")
    stranger = await system.browser_token("acct-stranger")
    path = f"/v1/connections/{conn['id']}/reverify"
    status, data = await system.api("POST", path, headers={"Authorization": f"Bearer {own}"})
    assert status == 200 and data["checked"] == 1
    status, data = await system.api("POST", path, headers={"Authorization": f"Bearer {stranger}"})
    assert status == 404 and data["error"]["code"] == "connection_not_found"
    status, data = await system.api("GET", f"/v1/connections/{conn['id']}/held",
                                    headers={"Authorization": f"Bearer {stranger}"})
    assert status == 404
    await system.api("DELETE", f"/v1/connections/{conn['id']}")
    status, data = await system.api("POST", path)
    assert status == 409 and data["error"]["code"] == "connection_disconnected"


async def test_a_purge_erases_held_requests(system: System, redis_client: aioredis.Redis, prefix: str) -> None:
    conn = await system.create()
    assert await send(system, conn, new_secret(), event()) == 401
    assert await redis_client.zcard(f"{prefix}:held") == 1
    status, _ = await system.api("POST", f"/v1/connections/{conn['id']}/purge")
    assert status == 204
    assert [k async for k in redis_client.scan_iter(match=f"{prefix}:{{{conn['id']}}}:held*")] == []
    assert await redis_client.zcard(f"{prefix}:held") == 0
    assert int(await redis_client.get(f"{prefix}:held:bytes") or 0) == 0


# --- the attacks --------------------------------------------------------------------------------------

# Small bounds: 3 held per connection, 4 KiB each connection, 5 KiB in total; 40 rejections at once.
SMALL_HELD_BOUNDS = {"held_max_per_connection": 3, "held_max_bytes_per_connection": 4096,
                     "held_max_total_bytes": 5120, "rejected_burst": 40}


@pytest.fixture
async def bounded(system_with: SystemWith) -> AsyncIterator[System]:
    async with system_with(receiver=SMALL_HELD_BOUNDS) as running:
        yield running


async def _dropped(system: System, reason: str) -> float:
    async with system.session.get(system.receiver_admin_url + "/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith(f'hookstatus_held_dropped_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    return 0.0


async def test_a_flood_of_forgeries_cannot_grow_past_the_bounds(
    bounded: System, redis_client: aioredis.Redis, prefix: str
) -> None:
    system = bounded
    conns = [await system.create() for _ in range(3)]
    per_conn_before, total_before = await _dropped(system, "connection_limit"), await _dropped(system, "total_limit")
    padding = "x" * 700  # each held request is about 1 KiB
    for conn in conns:
        for _ in range(12):
            assert await send(system, conn, new_secret(), event(padding)) == 401
    sizes = []
    for conn in conns:
        entries = await held(system, conn["id"])
        assert len(entries) <= 3
        assert sum(e["size"] for e in entries) <= 4096
        assert await redis_client.hlen(f"{prefix}:{{{conn['id']}}}:held:data") == len(entries)
        sizes += [e["size"] for e in entries]
    # The bounds count the bytes stored (sealed, nearly twice a request's size), not the request.
    stored = [orjson.loads(m)["stored"] for conn in conns
              for m in await redis_client.hvals(f"{prefix}:{{{conn['id']}}}:held:meta")]
    assert len(stored) == len(sizes) and min(s - z for s, z in zip(stored, sizes, strict=True)) > 0
    total = int(await redis_client.get(f"{prefix}:held:bytes") or 0)
    assert total == sum(stored) <= 5120
    assert await redis_client.zcard(f"{prefix}:held") == len(sizes)
    # The oldest go first: the last connection's latest requests are the ones kept (two of about 2 KiB
    # stored each fit in its 4 KiB).
    assert len(await held(system, conns[-1]["id"])) == 2
    assert await _dropped(system, "connection_limit") - per_conn_before >= 3 * 9
    assert await _dropped(system, "total_limit") - total_before >= 1


async def test_over_the_rejected_budget_nothing_is_held(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None
) -> None:
    async with start_system(amqp_url, redis_url, prefix, receiver={"rejected_burst": 2}) as system:
        conn = await system.create()
        statuses = [await send(system, conn, new_secret(), event()) for _ in range(5)]
        assert statuses[:2] == [401, 401] and set(statuses[2:]) == {429}
        assert len(await held(system, conn["id"])) == 2


async def test_the_held_body_never_appears_in_answers_logs_or_queue_messages(
    system: System, redis_client: aioredis.Redis, prefix: str, amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    marker = f"PRIVATE-{uuid.uuid4().hex}"
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        tap = await channel.declare_queue(exclusive=True)  # a copy of every delivery message
        await tap.bind(f"{prefix}.deliveries", routing_key="delivery")
        caplog.set_level(logging.DEBUG)
        conn = await system.create()
        provider_secret = new_secret()
        answers: list[Any] = []
        for i in range(2):
            headers = standard_webhooks_headers(provider_secret, event(marker), f"msg_{i}")
            headers["X-Private"] = marker  # a header too
            answers.append(await system.post_hook(conn["webhook_url"] + "?source=test", event(marker), headers))
        assert [status for status, _ in answers] == [401, 401]
        answers.append(await system.api("GET", f"/v1/connections/{conn['id']}/held"))
        answers.append(await system.api("POST", f"/v1/connections/{conn['id']}/reverify"))
        answers.append(await system.api("POST", f"/v1/connections/{conn['id']}/reconnect",
                                        json={"secret": provider_secret}))
        await system.wait_for(conn["id"], lambda v: v["events_received"] == 2)
        answers += [await system.api("GET", f"/v1/connections/{conn['id']}"),
                    await system.api("GET", f"/v1/connections/{conn['id']}/deliveries"),
                    await system.api("GET", "/v1/connections?account_id=acct-test")]
        messages = []
        while (message := await tap.get(fail=False, timeout=2)) is not None:
            messages.append(message.body)
            await message.ack()
    assert len(messages) == 4  # two rejected, two recovered
    assert marker not in orjson.dumps([data for _, data in answers]).decode()
    assert not [body for body in messages if marker.encode() in body]
    assert marker not in caplog.text
    stored = [await redis_client.dump(k) async for k in redis_client.scan_iter(match=f"{prefix}:*")]
    assert stored and not [raw for raw in stored if raw and marker.encode() in raw]


async def test_a_held_request_sealed_with_a_dropped_key_is_dropped_not_a_500(
    system: System, redis_client: aioredis.Redis, prefix: str
) -> None:
    conn = await system.create()
    assert await send(system, conn, new_secret(), event()) == 401
    data_key = f"{prefix}:{{{conn['id']}}}:held:data"
    [(hid, sealed)] = (await redis_client.hgetall(data_key)).items()
    await redis_client.hset(data_key, hid, sealed.replace("enc1:dev:", "enc1:gone:"))
    status, data = await system.api("POST", f"/v1/connections/{conn['id']}/reverify")
    assert status == 200 and data == {"checked": 0, "recovered": 0, "still_rejected": 0}
    assert await held(system, conn["id"]) == []
    assert await redis_client.zcard(f"{prefix}:held") == 0


async def test_the_python_client_lists_and_reverifies(system: System) -> None:
    from hookstatus_client import HookStatusClient
    from tests.system import TOKEN

    conn = await system.create()
    provider_secret = new_secret()
    assert await send(system, conn, provider_secret, event(), "msg_client") == 401
    async with HookStatusClient(system.api_url, TOKEN, session=system.session) as client:
        [entry] = await client.held(conn["id"])
        assert entry["reason"] == "signature_mismatch" and set(entry) == {
            "id", "received_at", "reason", "size", "event_id", "other_connection_id"}
        assert await client.reverify(conn["id"]) == {"checked": 1, "recovered": 0, "still_rejected": 1}
        await client.reconnect(conn["id"], secret=provider_secret)
        await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
        assert await client.held(conn["id"]) == []


async def test_held_requests_expire(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None
) -> None:
    import asyncio

    async with start_system(amqp_url, redis_url, prefix, receiver={"held_max_age_s": 1},
                            status_api={"held_max_age_s": 1}) as system:
        conn = await system.create()
        provider_secret = new_secret()
        expired_before = await _dropped(system, "expired")
        assert await send(system, conn, provider_secret, event(), "msg_old") == 401
        await asyncio.sleep(1.2)
        assert await held(system, conn["id"]) == []  # past its time: not listed, not verified again
        assert await send(system, conn, provider_secret, event(), "msg_new") == 401  # the old one goes now
        assert [h["id"] for h in await held(system, conn["id"])] != []
        assert await redis_client.zcard(f"{prefix}:{{{conn['id']}}}:held") == 1
        assert await redis_client.zcard(f"{prefix}:held") == 1
        assert await _dropped(system, "expired") - expired_before == 1
        status, _ = await system.api("POST", f"/v1/connections/{conn['id']}/reconnect",
                                     json={"secret": provider_secret})
        assert status == 200
        await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
        recovered = [d["event_id"] for d in await deliveries(system, conn["id"]) if d.get("recovered")]
        assert recovered == ["msg_new"]


async def test_a_settings_fix_verifies_the_held_request_too(system: System) -> None:
    import hashlib
    import hmac

    secret = "s3cret-" + uuid.uuid4().hex
    conn = await system.create("generic-hmac", secret=secret, settings={"header": "X-Signature"})
    body = orjson.dumps({"id": "evt_settings", "type": "order.created"})
    # The sender signs as documented (hex HMAC-SHA256 of the body) but in a header of its own name.
    headers = {"X-Hub-Sig": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
               "content-type": "application/json"}
    status, reply = await system.post_hook(conn["webhook_url"], body, headers)
    assert status == 401 and reply["error"]["code"] == "missing_header"
    [entry] = await held(system, conn["id"])
    assert entry["reason"] == "missing_header"
    status, _ = await system.api("POST", f"/v1/connections/{conn['id']}/reconnect",
                                 json={"settings": {"header": "X-Hub-Sig"}})
    assert status == 200
    view = await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
    assert view["events_received"] == 1
    assert await held(system, conn["id"]) == []
