"""Shopify through the running receiver. Shopify publishes no signing library for Python, so requests
are signed as its docs describe: base64 HMAC-SHA256 of the raw body with the app's client secret."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from tests.providers.flow import accepted, connection, hmac_sha
from tests.providers.kit import expect_rejections
from tests.system import System

SECRET = "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"
ORDER = orjson.dumps({"id": 820982911946154508, "email": "jon@example.com", "total_price": "199.65"})


def signed(body: bytes, secret: str = SECRET, prefix: str = "X-Shopify-", test: bool = False) -> dict[str, str]:
    headers = {
        f"{prefix}Hmac-Sha256": base64.b64encode(hmac_sha(secret, body)).decode(),
        f"{prefix}Topic": "orders/create",
        f"{prefix}Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        f"{prefix}Event-Id": "98880550-7158-44d4-b7cd-2c97c8a091b5",
        "content-type": "application/json",
    }
    if test:
        headers[f"{prefix}Test"] = "true"
    return headers


async def test_order_connects(system: System) -> None:
    conn = await connection(system, "shopify", secret=SECRET)
    delivery = await accepted(system, conn, ORDER, signed(ORDER))
    assert delivery["event_type"] == "orders/create"
    assert delivery["event_id"] == "shopify:b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    assert delivery["is_test"] is False


async def test_unprefixed_headers_are_accepted(system: System) -> None:
    conn = await connection(system, "shopify", secret=SECRET)
    delivery = await accepted(system, conn, ORDER, signed(ORDER, prefix="shopify-"))
    assert delivery["event_type"] == "orders/create"


async def test_send_test_notification_is_marked_as_test(system: System) -> None:
    conn = await connection(system, "shopify", secret=SECRET)
    delivery = await accepted(system, conn, ORDER, signed(ORDER, test=True))
    assert delivery["is_test"] is True


async def test_tampered_wrong_secret_and_hex_are_refused(system: System) -> None:
    def tampered(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return ORDER.replace(b"199.65", b"0.01"), signed(ORDER)

    def other_secret(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return ORDER, signed(ORDER, "shpss_another_secret_0000000000")

    def hex_signature(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return ORDER, {**signed(ORDER), "X-Shopify-Hmac-Sha256": hmac_sha(SECRET, ORDER).hex() + "!"}

    await expect_rejections(
        system, "shopify",
        [(tampered, "signature_mismatch"), (other_secret, "signature_mismatch"),
         (hex_signature, "malformed_signature")],
        secret=SECRET,
    )
