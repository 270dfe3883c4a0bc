"""Microsoft Graph change notifications through the running receiver: the ``validationToken`` echo,
then notifications whose ``clientState`` must match ``settings.client_state`` (Graph signs nothing, so
there is no body to tamper with beyond the clientState itself)."""

from __future__ import annotations

from typing import Any

import orjson

from tests.providers.flow import accepted, connection, rejected
from tests.system import System

CLIENT_STATE = "secretClientValue-7f3a9c"
# Graph's validation token as its docs show it, URL-encoded in the query.
TOKEN = "Validation: Testing client application reachability for subscription Request-Id: 7f0e9c5d"


def notification(client_state: str = CLIENT_STATE, change: str = "created") -> bytes:
    return orjson.dumps(
        {"value": [{"subscriptionId": "d29ad2e8-6d4b-4f1f-8a2e-8d2b6a0f4c1d", "clientState": client_state,
                    "changeType": change, "resource": "Users/ab/Messages/cd",
                    "subscriptionExpirationDateTime": "2026-11-30T18:23:45.9356913Z",
                    "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95"}]}
    )


async def graph(system: System) -> dict[str, Any]:
    return await connection(system, "msgraph", settings={"client_state": CLIENT_STATE})


async def test_client_state_is_required_at_creation(system: System) -> None:
    body = {"account_id": "acct-test", "provider": "msgraph"}
    status, reply = await system.api("POST", "/v1/connections", json=body)
    assert status == 400
    assert reply["error"]["code"] == "invalid_settings"
    assert "client_state" in reply["error"]["message"]
    status, reply = await system.api(
        "POST", "/v1/connections", json={**body, "settings": {"client_state": "x" * 129}}
    )
    assert status == 400
    assert reply["error"]["code"] == "invalid_settings"


async def test_validation_token_is_echoed_and_recorded_as_reachable(system: System) -> None:
    conn = await graph(system)
    async with system.session.post(
        conn["webhook_url"], params={"validationToken": TOKEN}, data=b"", headers={"content-type": "text/plain"}
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert await resp.text() == TOKEN  # URL-decoded, as Graph requires
    # Anyone can send a validation request: it proves the URL is reachable, not the clientState.
    view = await system.wait_for(conn["id"], lambda v: v["reachable_at"] is not None)
    assert view["state"] == "pending"
    _, data = await system.api("GET", f"/v1/connections/{conn['id']}/deliveries")
    [delivery] = data["deliveries"]
    assert (delivery["outcome"], delivery["handshake"], delivery["is_test"]) == ("reachable", True, True)
    await accepted(system, conn, notification(), {"content-type": "application/json"})


async def test_notification_with_matching_client_state_connects(system: System) -> None:
    conn = await graph(system)
    delivery = await accepted(system, conn, notification(), {"content-type": "application/json"})
    assert delivery["event_type"] == "created"


async def test_notification_with_another_client_state_is_refused(system: System) -> None:
    conn = await graph(system)
    await rejected(system, conn, notification("someone-elses-state"), {}, "signature_mismatch")


async def test_notification_without_value_list_is_refused(system: System) -> None:
    conn = await graph(system)
    await rejected(system, conn, b'{"hello": "world"}', {}, "malformed_body")


async def test_providers_list_says_what_each_of_these_needs(system: System) -> None:
    status, data = await system.api("GET", "/v1/providers")
    assert status == 200
    listed = {p["name"]: p for p in data["providers"]}
    ours = ("hubspot", "linear", "square", "pagerduty", "calendly", "paddle", "typeform", "intercom",
            "dropbox", "twitter", "asana", "msgraph")
    for name in ours:
        entry = listed[name]
        assert entry["title"] and entry["scheme"] and entry["secret_format"] and entry["test_instructions"]
    assert "required" in listed["msgraph"]["settings"]["client_state"]
    for name in ("dropbox", "twitter", "asana", "msgraph"):
        assert listed[name]["handshake"], name
    assert listed["hubspot"]["headers"] == ["X-HubSpot-Signature-v3", "X-HubSpot-Request-Timestamp"]
