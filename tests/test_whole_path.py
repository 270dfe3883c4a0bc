"""One connection from setup to connected or failed, through all three services, on the real broker
and the real Redis, signed by the ``standardwebhooks`` package from PyPI."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator

import orjson

from tests.signing import generic_sha256_headers, standard_webhooks_headers
from tests.system import System

EVENT = orjson.dumps({"type": "invoice.paid", "data": {"amount": 1200}})


def msg_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


async def test_signed_webhook_turns_connection_connected(system: System) -> None:
    conn = await system.create()
    assert conn["state"] == "pending"
    assert conn["secret"].startswith("whsec_")
    assert conn["webhook_url"] == f"{system.receiver_url}/hooks/{conn['id']}"
    assert conn["cta"]["label"] == "Waiting for first event…"

    status, reply = await system.post_hook(
        conn["webhook_url"], EVENT, standard_webhooks_headers(conn["secret"], EVENT, msg_id())
    )
    assert status == 202, reply

    view = await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
    assert view["events_received"] == 1
    assert view["reason"] == "verified_event"
    assert view["cta"]["label"] == "Connected"
    assert view["last_event_at"] is not None
    assert "secret" not in view
    _, data = await system.api("GET", f"/v1/connections/{conn['id']}/deliveries")
    [delivery] = data["deliveries"]
    assert delivery["outcome"] == "verified"
    assert delivery["event_type"] == "invoice.paid"
    assert conn["secret"] not in orjson.dumps(data).decode()


async def test_svix_header_names_are_accepted(system: System) -> None:
    conn = await system.create()
    headers = standard_webhooks_headers(conn["secret"], EVENT, msg_id(), prefix="svix")
    status, _ = await system.post_hook(conn["webhook_url"], EVENT, headers)
    assert status == 202
    await system.wait_for(conn["id"], lambda v: v["state"] == "connected")


async def test_wrong_secret_is_refused_and_the_reason_is_shown(system: System) -> None:
    conn = await system.create()
    other = (await system.create(account_id="acct-elsewhere"))["secret"]
    status, reply = await system.post_hook(
        conn["webhook_url"], EVENT, standard_webhooks_headers(other, EVENT, msg_id())
    )
    assert status == 401
    assert reply["error"]["code"] == "signature_mismatch"
    view = await system.wait_for(conn["id"], lambda v: v["last_error"] is not None)
    assert view["state"] == "pending"
    assert view["last_error"]["code"] == "signature_mismatch"
    assert view["events_received"] == 0
    _, data = await system.api("GET", f"/v1/connections/{conn['id']}/deliveries")
    assert [d["outcome"] for d in data["deliveries"]] == ["rejected"]
    assert data["deliveries"][0]["reason"] == "signature_mismatch"


async def test_tampered_body_is_refused(system: System) -> None:
    conn = await system.create()
    headers = standard_webhooks_headers(conn["secret"], EVENT, msg_id())
    tampered = EVENT.replace(b"1200", b"9999")
    status, reply = await system.post_hook(conn["webhook_url"], tampered, headers)
    assert status == 401
    assert reply["error"]["code"] == "signature_mismatch"
    view = await system.wait_for(conn["id"], lambda v: v["last_error"] is not None)
    assert view["events_received"] == 0


async def test_stale_timestamp_is_refused_with_the_skew(system: System) -> None:
    conn = await system.create()
    headers = standard_webhooks_headers(conn["secret"], EVENT, msg_id(), skew_s=-900)
    status, reply = await system.post_hook(conn["webhook_url"], EVENT, headers)
    assert status == 401
    assert reply["error"]["code"] == "timestamp_too_old"
    assert "900 s old" in reply["error"]["message"] or "899 s old" in reply["error"]["message"]


async def test_missing_signature_header_is_refused(system: System) -> None:
    conn = await system.create()
    headers = standard_webhooks_headers(conn["secret"], EVENT, msg_id())
    del headers["webhook-signature"]
    status, reply = await system.post_hook(conn["webhook_url"], EVENT, headers)
    assert status == 401
    assert reply["error"]["code"] == "missing_header"


async def test_deadline_without_events_fails_with_its_reason(system: System) -> None:
    conn = await system.create(timeout_s=1)
    view = await system.wait_for(conn["id"], lambda v: v["state"] == "failed", timeout_s=10)
    assert view["reason"] == "deadline_no_events"
    assert view["cta"]["label"] == "Reconnect"
    assert "Nothing arrived" in view["reason_message"]


async def test_deadline_after_bad_signatures_says_so(system: System) -> None:
    conn = await system.create(timeout_s=2)
    wrong = (await system.create(account_id="acct-elsewhere"))["secret"]
    status, _ = await system.post_hook(
        conn["webhook_url"], EVENT, standard_webhooks_headers(wrong, EVENT, msg_id())
    )
    assert status == 401
    view = await system.wait_for(conn["id"], lambda v: v["state"] == "failed", timeout_s=10)
    assert view["reason"] == "deadline_bad_signatures"
    assert view["last_error"]["code"] == "signature_mismatch"


async def test_deadline_after_stale_timestamps_says_so(system: System) -> None:
    conn = await system.create(timeout_s=2)
    headers = standard_webhooks_headers(conn["secret"], EVENT, msg_id(), skew_s=-3600)
    status, _ = await system.post_hook(conn["webhook_url"], EVENT, headers)
    assert status == 401
    view = await system.wait_for(conn["id"], lambda v: v["state"] == "failed", timeout_s=10)
    assert view["reason"] == "deadline_stale_timestamps"


async def test_late_verified_event_recovers_a_failed_connection(system: System) -> None:
    conn = await system.create(timeout_s=1)
    await system.wait_for(conn["id"], lambda v: v["state"] == "failed")
    status, _ = await system.post_hook(
        conn["webhook_url"], EVENT, standard_webhooks_headers(conn["secret"], EVENT, msg_id())
    )
    assert status == 202
    await system.wait_for(conn["id"], lambda v: v["state"] == "connected")


async def test_duplicate_delivery_is_counted_once(system: System) -> None:
    conn = await system.create()
    same_id = msg_id()
    for _ in range(3):  # the provider retries the same event
        headers = standard_webhooks_headers(conn["secret"], EVENT, same_id)
        status, _ = await system.post_hook(conn["webhook_url"], EVENT, headers)
        assert status == 202
    other = standard_webhooks_headers(conn["secret"], EVENT, msg_id())
    assert (await system.post_hook(conn["webhook_url"], EVENT, other))[0] == 202
    view = await system.wait_for(conn["id"], lambda v: v["events_received"] >= 2)
    await asyncio.sleep(0.5)  # give any wrongly double-counted message time to land
    assert (await system.get(conn["id"]))["events_received"] == 2
    assert view["state"] == "connected"


async def test_unknown_connection_is_404(system: System) -> None:
    status, reply = await system.post_hook(f"{system.receiver_url}/hooks/{uuid.uuid4().hex}", EVENT, {})
    assert status == 404
    assert reply["error"]["code"] == "unknown_connection"
    status, reply = await system.post_hook(f"{system.receiver_url}/hooks/not-an-id", EVENT, {})
    assert status == 404


async def test_body_over_the_limit_is_413_and_recorded(system: System) -> None:
    conn = await system.create()
    limit = 1024 * 1024

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit is met while reading
        for _ in range(17):
            yield b"x" * 65536

    answers = [
        # Content-Length announced: refused before reading.
        await system.post_hook(conn["webhook_url"], io.BytesIO(b"x" * (limit + 1)), {}),
        await system.post_hook(conn["webhook_url"], chunked(), {}),
    ]
    for status, reply in answers:
        assert status == 413
        error = reply["error"]
        assert error["code"] == "body_too_large"
        assert error["message"] == f"The request body is larger than the limit of {limit} bytes."
        assert error["limit_bytes"] == limit and len(error["delivery_id"]) == 32
    # Recorded in the connection's deliveries like any other rejection.
    ids = {reply["error"]["delivery_id"] for _, reply in answers}
    for _ in range(200):
        _, data = await system.api("GET", f"/v1/connections/{conn['id']}/deliveries")
        if len(data["deliveries"]) == len(ids):
            break
        await asyncio.sleep(0.05)
    assert {d["id"] for d in data["deliveries"]} == ids
    assert {(d["outcome"], d["reason"]) for d in data["deliveries"]} == {("rejected", "body_too_large")}
    view = await system.get(conn["id"])
    assert view["last_error"]["code"] == "body_too_large"
    # An unknown connection's oversized body is still just unknown.
    unknown = f"{system.receiver_url}/hooks/{uuid.uuid4().hex}"
    status, reply = await system.post_hook(unknown, io.BytesIO(b"x" * (limit + 1)), {})
    assert (status, reply["error"]["code"]) == (404, "unknown_connection")


async def test_a_connected_connection_whose_deliveries_fail_says_so(system: System) -> None:
    conn = await system.create()
    body = b'{"type":"ok"}'
    ok = standard_webhooks_headers(conn["secret"], body, "msg_good")
    assert (await system.post_hook(conn["webhook_url"], body, ok))[0] == 202
    view = await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
    assert view["reason_message"] == "A signed event arrived and verified."
    for i in range(3):  # failing: rejected deliveries in a row (FAILING_AFTER_REJECTED)
        forged = standard_webhooks_headers("whsec_" + "A" * 32, body, f"msg_bad_{i}")
        assert (await system.post_hook(conn["webhook_url"], body, forged))[0] == 401
    view = await system.wait_for(conn["id"], lambda v: v["display"] == "failing")
    assert view["state"] == "connected" and view["reason"] == "verified_event"
    assert "verified." not in view["reason_message"]
    assert "fail verification" in view["reason_message"]
    assert view["reason_message"] == view["cta"]["hint"]


async def test_generic_hmac_sha256_path(system: System) -> None:
    conn = await system.create("generic-hmac-sha256")
    body = orjson.dumps({"id": "evt_1", "type": "order.created"})
    status, _ = await system.post_hook(conn["webhook_url"], body, generic_sha256_headers(conn["secret"], body))
    assert status == 202
    view = await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
    assert view["events_received"] == 1
    bad = generic_sha256_headers("not-the-secret-at-all", body)
    assert (await system.post_hook(conn["webhook_url"], body, bad))[0] == 401


async def test_disconnected_connection_refuses_webhooks(system: System) -> None:
    conn = await system.create()
    status, view = await system.api("DELETE", f"/v1/connections/{conn['id']}")
    assert status == 200
    assert view["state"] == "disconnected"
    assert view["cta"]["label"] == "Connect"
    status, reply = await system.post_hook(
        conn["webhook_url"], EVENT, standard_webhooks_headers(conn["secret"], EVENT, msg_id())
    )
    assert status == 410
    assert reply["error"]["code"] == "connection_disconnected"
