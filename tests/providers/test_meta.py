"""Meta (Facebook, Instagram, WhatsApp) through the running receiver: the GET subscription handshake
as Meta's docs ("Webhooks -> Getting started -> Verification requests") describe it, and event POSTs
signed as documented: ``sha256=`` + hex HMAC-SHA256 of the raw body with the app secret."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from tests.providers.flow import accepted, connection, deliver, hmac_sha
from tests.providers.kit import delivery_list, expect_rejections, handshake
from tests.system import System

APP_SECRET = "6d9f0e1b2c3a4d5e6f708192a3b4c5d6"
VERIFY = {"verify_token": "my-verify-token"}
MESSAGE = orjson.dumps({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [
    {"field": "messages", "value": {"messaging_product": "whatsapp", "messages": [{"id": "wamid.1"}]}}]}]})


def signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac_sha(secret, body).hex(), "content-type": "application/json"}


def subscribe(token: str, challenge: str = "1158201444") -> str:
    return urlencode({"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": challenge})


async def test_verify_token_is_required_at_creation(system: System) -> None:
    for settings in ({}, {"verify_token": ""}, {"verify_token": 5}, {"verify_token": "x", "other": 1}):
        status, data = await system.api(
            "POST", "/v1/connections", json={"account_id": "a", "provider": "meta", "settings": settings}
        )
        assert status == 400, settings
        assert data["error"]["code"] == "invalid_settings"


async def test_subscription_handshake_echoes_the_challenge_and_connects(system: System) -> None:
    conn = await connection(system, "meta", settings=VERIFY)  # before the app secret is even set
    status, reply = await handshake(system, conn, b"", {}, method="GET", query=subscribe("my-verify-token"))
    assert status == 200
    assert reply == 1158201444  # the challenge, as plain text


async def test_wrong_verify_token_is_403_with_a_reason(system: System) -> None:
    conn = await connection(system, "meta", settings=VERIFY)
    status, reply = await deliver(system, conn, b"", {}, method="GET", query=subscribe("not-it"))
    assert status == 403
    assert reply["error"]["code"] == "verify_token_mismatch"
    view = await system.wait_for(conn["id"], lambda v: v["last_error"] is not None)
    assert view["state"] == "pending" and view["last_error"]["code"] == "verify_token_mismatch"
    [entry] = await delivery_list(system, conn["id"])
    assert entry["reason"] == "verify_token_mismatch"


async def test_signed_event_connects(system: System) -> None:
    conn = await connection(system, "meta", secret=APP_SECRET, settings=VERIFY)
    delivery = await accepted(system, conn, MESSAGE, signed(MESSAGE))
    assert delivery["event_type"] == "whatsapp_business_account.messages"


async def test_event_before_the_app_secret_is_set_is_refused(system: System) -> None:
    conn = await connection(system, "meta", settings=VERIFY)
    status, reply = await deliver(system, conn, MESSAGE, signed(MESSAGE, ""))
    assert status == 401 and reply["error"]["code"] == "secret_not_set"


async def test_tampered_and_wrong_secret_are_refused(system: System) -> None:
    def tampered(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return MESSAGE.replace(b"wamid.1", b"wamid.2"), signed(MESSAGE)

    def other_secret(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return MESSAGE, signed(MESSAGE, "0" * 32)

    await expect_rejections(
        system, "meta", [(tampered, "signature_mismatch"), (other_secret, "signature_mismatch")],
        secret=APP_SECRET, settings=VERIFY,
    )


async def test_reconnect_with_only_the_app_secret_keeps_the_verify_token(system: System) -> None:
    """The usual order: create with the verify token, subscribe, then paste the app secret."""
    conn = await connection(system, "meta", settings=VERIFY)
    status, view = await system.api("POST", f"/v1/connections/{conn['id']}/reconnect", json={"secret": APP_SECRET})
    assert status == 200, view
    await accepted(system, conn, MESSAGE, signed(MESSAGE))
    status, reply = await deliver(system, conn, b"", {}, method="GET", query=subscribe("my-verify-token"))
    assert status == 200 and reply == 1158201444
