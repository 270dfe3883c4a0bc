"""Test events: a window that the next verified event passes, and that fails at expiry with what was seen.
Every change of a test reaches an open stream (it bumps the connection's version)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson

from hookstatus_client import HookStatusClient, StreamEvent
from shared.records import ConnectionRecord
from tests.signing import standard_webhooks_headers
from tests.system import TOKEN, System

EVENT = orjson.dumps({"type": "ping"})
GUARD_S = 15  # against hanging only


async def _post(system: System, conn: dict[str, Any], secret: str | None = None, skew_s: float = 0) -> int:
    headers = standard_webhooks_headers(secret or conn["secret"], EVENT, f"msg_{uuid.uuid4().hex}", skew_s=skew_s)
    status, _ = await system.post_hook(conn["webhook_url"], EVENT, headers)
    return status


async def _next_view(events: AsyncIterator[StreamEvent]) -> dict[str, Any]:
    async for event in events:
        if event.event == "connection":
            return event.data  # type: ignore[no-any-return]
    raise AssertionError("the stream ended")


async def _test_state(system: System, cid: str, state: str) -> dict[str, Any]:
    view = await system.wait_for(cid, lambda v: (v["last_test"] or {}).get("state") == state)
    return view["last_test"]  # type: ignore[no-any-return]


async def test_a_signed_event_passes_the_test_and_the_stream_shows_each_step(system: System) -> None:
    conn = await system.create()
    async with HookStatusClient(system.api_url, TOKEN, session=system.session) as client, \
            asyncio.timeout(GUARD_S):
        events = client.stream(connection_id=conn["id"])
        assert (await _next_view(events))["last_test"] is None

        test = await client.start_test(conn["id"])
        assert test["state"] == "waiting"
        assert test["reason"] is None
        assert "Svix" in test["instructions"]
        assert test["expires_at"] > test["started_at"]
        waiting = await _next_view(events)
        assert waiting["last_test"]["id"] == test["id"]
        assert waiting["last_test"]["state"] == "waiting"
        assert waiting["cta"]["label"] == "Testing…"

        assert await _post(system, conn) == 202
        passed = await _next_view(events)
        assert passed["last_test"]["state"] == "passed"
        assert passed["last_test"]["reason"] == "test_event_verified"
        assert passed["last_test"]["finished_at"] is not None
        assert passed["state"] == "connected"
        assert passed["cta"]["label"] == "Connected"
        assert passed["version"] > waiting["version"]
        await events.aclose()

        again = await client.get_test(conn["id"], test["id"])
        assert again["state"] == "passed"
        assert again["reason_message"].startswith("A signed test event arrived")


async def test_a_test_without_events_fails_at_expiry_and_the_connection_stays_connected(system: System) -> None:
    conn = await system.create()
    assert await _post(system, conn) == 202
    await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
    status, test = await system.api("POST", f"/v1/connections/{conn['id']}/tests", json={"timeout_s": 1})
    assert status == 201
    failed = await _test_state(system, conn["id"], "failed")
    assert failed["id"] == test["id"]
    assert failed["reason"] == "test_no_events"
    assert "No event arrived" in failed["reason_message"]
    view = await system.get(conn["id"])
    assert view["state"] == "connected"
    assert view["cta"]["label"] == "Connected"


async def test_a_test_that_saw_only_bad_signatures_says_so(system: System) -> None:
    conn = await system.create()
    wrong = (await system.create(account_id="acct-elsewhere"))["secret"]
    status, _ = await system.api("POST", f"/v1/connections/{conn['id']}/tests", json={"timeout_s": 2})
    assert status == 201
    assert await _post(system, conn, secret=wrong) == 401
    assert await _post(system, conn, secret=wrong) == 401
    failed = await _test_state(system, conn["id"], "failed")
    assert failed["reason"] == "test_bad_signatures"
    assert failed["seen"] == {"signature_mismatch": 2}
    assert "signing secret" in failed["reason_message"]


async def test_a_test_that_saw_only_stale_timestamps_says_so(system: System) -> None:
    conn = await system.create()
    status, _ = await system.api("POST", f"/v1/connections/{conn['id']}/tests", json={"timeout_s": 2})
    assert status == 201
    assert await _post(system, conn, skew_s=-3600) == 401
    failed = await _test_state(system, conn["id"], "failed")
    assert failed["reason"] == "test_stale_timestamps"


async def test_a_new_test_replaces_an_open_one(system: System) -> None:
    conn = await system.create()
    _, first = await system.api("POST", f"/v1/connections/{conn['id']}/tests")
    _, second = await system.api("POST", f"/v1/connections/{conn['id']}/tests")
    assert first["id"] != second["id"]
    status, old = await system.api("GET", f"/v1/connections/{conn['id']}/tests/{first['id']}")
    assert status == 200
    assert old["state"] == "failed" and old["reason"] == "test_superseded"
    assert (await system.get(conn["id"]))["last_test"]["id"] == second["id"]
    assert await _post(system, conn) == 202
    assert (await _test_state(system, conn["id"], "passed"))["id"] == second["id"]
    _, old = await system.api("GET", f"/v1/connections/{conn['id']}/tests/{first['id']}")
    assert old["reason"] == "test_superseded"  # the archived one does not change any more


async def test_stripe_tests_say_where_the_button_is(system: System) -> None:
    conn = await system.create("stripe")
    status, test = await system.api("POST", f"/v1/connections/{conn['id']}/tests")
    assert status == 201
    assert "Developers -> Webhooks" in test["instructions"]
    assert "Send test webhook" in test["instructions"]


async def test_bad_test_requests(system: System) -> None:
    conn = await system.create()
    base = f"/v1/connections/{conn['id']}/tests"
    for body in ({"timeout_s": 0}, {"timeout_s": 10**7}, {"timeout_s": "5"}, {"when": "now"}):
        status, data = await system.api("POST", base, json=body)
        assert status == 400, body
    status, data = await system.api("POST", base, data=b"{not json", headers={"Content-Type": "application/json"})
    assert status == 400 and data["error"]["code"] == "malformed_json"
    for test_id in (uuid.uuid4().hex, "nope"):
        status, data = await system.api("GET", f"{base}/{test_id}")
        assert status == 404 and data["error"]["code"] == "test_not_found"
    status, data = await system.api("POST", f"/v1/connections/{uuid.uuid4().hex}/tests")
    assert status == 404 and data["error"]["code"] == "connection_not_found"
    await system.api("DELETE", f"/v1/connections/{conn['id']}")
    status, data = await system.api("POST", base)
    assert status == 409 and data["error"]["code"] == "connection_disconnected"
    assert (await system.get(conn["id"]))["last_test"] is None


async def test_a_handshake_that_proves_a_setting_passes_the_test(system: System) -> None:
    # Meta's subscription handshake proves the verify token (an echo anyone can send proves nothing,
    # and passes no test: tests/security/test_handshakes.py).
    conn = await system.create("meta", settings={"verify_token": "my-verify-token"})
    status, test = await system.api("POST", f"/v1/connections/{conn['id']}/tests")
    assert status == 201
    challenge = str(uuid.uuid4().int)[:10]
    query = {"hub.mode": "subscribe", "hub.verify_token": "my-verify-token", "hub.challenge": challenge}
    async with system.session.get(conn["webhook_url"], params=query) as resp:
        assert resp.status == 200
        assert await resp.text() == challenge
    passed = await _test_state(system, conn["id"], "passed")
    assert passed["id"] == test["id"]
    assert passed["reason"] == "test_handshake_completed"


NOW = 1_800_000_000_000


def _raw(state: str, **fields: Any) -> ConnectionRecord:
    base = {"id": "a" * 32, "account_id": "acct", "provider": "stripe", "state": state,
            "webhook_url": "http://x/hooks/a", "version": "3", "pending_deadline": str(NOW + 60_000)}
    return ConnectionRecord.from_hash({**base, **{k: str(v) for k, v in fields.items()}})


CTA_TABLE = [  # (raw, display, label, action, secondary, secondary_action) -- the table in docs/API.md
    (_raw("disconnected", reason="disconnected_by_user"), "disconnected", "Connect", "connect", None, None),
    (_raw("pending", reason="awaiting_first_event"), "pending", "Waiting for first event…", "send_test",
     "Send test event", "send_test"),
    (_raw("connected", last_event_at=NOW - 1000), "connected", "Connected", "reconnect", "Reconnect", "reconnect"),
    (_raw("connected", last_event_at=NOW - 10_000, expected_interval_s=5), "silent", "Connected", "reconnect",
     "Send test event", "send_test"),
    (_raw("connected", last_event_at=NOW - 10_000,
          last_error=orjson.dumps({"code": "signature_mismatch", "message": "m", "at": NOW - 5}).decode(),
          rejected_since_event=3),
     "failing", "Fix signing secret", "reconnect", "Send test event", "send_test"),
    (_raw("failed", reason="deadline_bad_signatures"), "failed", "Reconnect", "reconnect", "Send test event",
     "send_test"),
    (_raw("pending", reason="awaiting_first_event", pending_deadline=NOW - 1), "failed", "Reconnect", "reconnect",
     "Send test event", "send_test"),
    (_raw("connected", last_event_at=NOW, test_id="b" * 32, test_state="waiting", test_started_at=NOW,
          test_expires_at=NOW + 1000), "connected", "Testing…", None, None, None),
]


def test_every_state_has_its_button_and_display() -> None:
    from services.status_api.presentation import connection_view

    for raw, display, label, action, secondary, secondary_action in CTA_TABLE:
        view = connection_view(raw, NOW)
        assert view["display"] == display, raw
        cta = view["cta"]
        assert (cta["label"], cta["action"], cta["secondary"], cta["secondary_action"]) == (
            label, action, secondary, secondary_action), raw
        if display in ("failing", "silent", "failed"):  # the words say what the badge says
            assert view["reason_message"] == cta["hint"], raw
    failed = connection_view(CTA_TABLE[5][0], NOW)
    assert "signatures do not match" in failed["cta"]["hint"]
    assert connection_view(CTA_TABLE[-1][0], NOW)["last_test"]["state"] == "waiting"
