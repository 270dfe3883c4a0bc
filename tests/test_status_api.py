"""The status API's contract: tokens, validation, every bad input a 4xx with a code, never a 500."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.system import System


async def raw(system: System, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with system.session.request(method, system.api_url + path, **kw) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_every_v1_call_needs_a_token(system: System) -> None:
    status, body = await raw(system, "GET", "/v1/connections?account_id=a")
    assert status == 401
    assert body["error"]["code"] == "missing_token"
    status, body = await raw(
        system, "GET", "/v1/connections?account_id=a", headers={"Authorization": "Bearer nope"}
    )
    assert status == 401
    assert body["error"]["code"] == "invalid_token"


async def test_health_endpoints_need_no_token(system: System) -> None:
    assert (await raw(system, "GET", "/healthz"))[0] == 200
    status, body = await raw(system, "GET", "/readyz")
    assert status == 200
    assert body["checks"] == {"redis": True, "rabbitmq": True}


async def test_create_returns_the_documented_fields(system: System) -> None:
    conn = await system.create(account_id="acct-fields", timeout_s=30)
    expected = {"id", "account_id", "provider", "state", "reason", "webhook_url", "secret",
                "pending_deadline", "cta", "created_at", "updated_at"}
    assert expected <= set(conn)
    assert set(conn["cta"]) >= {"label", "action"}
    assert len(conn["id"]) == 32
    view = await system.get(conn["id"])
    assert "secret" not in view
    assert {"last_event_at", "events_received", "last_error"} <= set(view)


async def test_given_secret_is_kept_and_never_shown_again(system: System) -> None:
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    conn = await system.create(secret=secret)
    assert conn["secret"] == secret
    _, listing = await system.api("GET", "/v1/connections?account_id=acct-test")
    assert secret not in str(listing)


async def test_list_by_account(system: System) -> None:
    account = f"acct-{uuid.uuid4().hex[:8]}"
    first = await system.create(account_id=account)
    second = await system.create("generic-hmac-sha256", account_id=account)
    await system.create(account_id="someone-else")
    status, body = await system.api("GET", f"/v1/connections?account_id={account}")
    assert status == 200
    assert [c["id"] for c in body["connections"]] == [first["id"], second["id"]]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "malformed_json"),
        (b"[1, 2]", "invalid_body"),
        (b'{"account_id": 5, "provider": "standard-webhooks"}', "invalid_account_id"),
        (b'{"account_id": "a"}', "missing_field"),
        (b'{"account_id": "a", "provider": "carrier-pigeon"}', "unknown_provider"),
        (b'{"account_id": "a", "provider": "standard-webhooks", "timeout_s": "soon"}', "invalid_field"),
        (b'{"account_id": "a", "provider": "standard-webhooks", "timeout_s": 0}', "invalid_field"),
        (b'{"account_id": "a", "provider": "standard-webhooks", "timeout_s": true}', "invalid_field"),
        (b'{"account_id": "a", "provider": "standard-webhooks", "secret": "short"}', "invalid_secret"),
        (b'{"account_id": "a", "provider": "standard-webhooks", "colour": "red"}', "unknown_field"),
        (b'{"account_id": "a", "provider": "standard-webhooks", "settings": []}', "invalid_settings"),
    ],
)
async def test_bad_create_input_is_a_400_with_a_code(system: System, body: bytes, code: str) -> None:
    status, reply = await system.api(
        "POST", "/v1/connections", data=body, headers={"Content-Type": "application/json"}
    )
    assert status == 400, reply
    assert reply["error"]["code"] == code
    assert reply["error"]["message"]


async def test_bad_input_changes_no_state(system: System) -> None:
    await system.api("POST", "/v1/connections", data=b'{"account_id": "untouched", "provider": "x"}')
    _, body = await system.api("GET", "/v1/connections?account_id=untouched")
    assert body == {"connections": []}


@pytest.mark.parametrize("cid", [uuid.uuid4().hex, "not-an-id", "../../etc"])
async def test_unknown_ids_are_404(system: System, cid: str) -> None:
    for method, path in (
        ("GET", f"/v1/connections/{cid}"),
        ("GET", f"/v1/connections/{cid}/deliveries"),
        ("POST", f"/v1/connections/{cid}/reconnect"),
        ("DELETE", f"/v1/connections/{cid}"),
    ):
        status, reply = await system.api(method, path)
        assert status == 404, (method, path, reply)
        assert reply["error"]["code"] in ("connection_not_found", "not_found")


async def test_list_needs_a_valid_account_id(system: System) -> None:
    status, reply = await system.api("GET", "/v1/connections")
    assert status == 400
    assert reply["error"]["code"] == "invalid_account_id"


async def test_reconnect_goes_back_to_pending_with_a_new_deadline(system: System) -> None:
    conn = await system.create(timeout_s=1)
    await system.wait_for(conn["id"], lambda v: v["state"] == "failed")
    status, view = await system.api("POST", f"/v1/connections/{conn['id']}/reconnect", json={"timeout_s": 60})
    assert status == 200, view
    assert view["state"] == "pending"
    assert view["pending_deadline"] > conn["pending_deadline"]
    assert view["last_error"] is None
    assert "secret" not in view


async def test_reconnect_rejects_bad_input(system: System) -> None:
    conn = await system.create()
    status, reply = await system.api(
        "POST", f"/v1/connections/{conn['id']}/reconnect", data=b"{oops",
        headers={"Content-Type": "application/json"},
    )
    assert status == 400
    assert reply["error"]["code"] == "malformed_json"
    assert (await system.get(conn["id"]))["state"] == "pending"


async def test_unknown_route_and_method_are_json_4xx(system: System) -> None:
    status, reply = await system.api("GET", "/v1/nothing-here")
    assert status == 404
    assert reply["error"]["code"] == "not_found"
    status, reply = await system.api("PUT", "/v1/connections")
    assert status == 405
    assert reply["error"]["code"] == "method_not_allowed"


async def test_providers_are_listed(system: System) -> None:
    status, body = await system.api("GET", "/v1/providers")
    assert status == 200
    names = {p["name"] for p in body["providers"]}
    assert {"standard-webhooks", "generic-hmac-sha256"} <= names
