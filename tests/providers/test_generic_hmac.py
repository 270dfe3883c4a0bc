"""``generic-hmac`` through the running receiver: settings checked at creation, and requests signed with
a plain HMAC written out here from the settings' meaning (never with the adapter's code)."""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
import pytest

from tests.providers.flow import accepted, connection, hmac_sha
from tests.providers.kit import expect_rejections
from tests.system import System

SECRET = "generic-secret-0123456789abcdef"
EVENT = orjson.dumps({"id": "evt_42", "type": "order.created", "total": 10})
# A Paddle-Classic-like setup: base64 SHA-512 with a prefix, timestamp in milliseconds, signed first.
SETTINGS = {"header": "X-Acme-Signature", "algorithm": "sha512", "encoding": "base64", "prefix": "v1=",
            "timestamp_header": "X-Acme-Timestamp", "timestamp_unit": "ms", "tolerance_s": 120,
            "template": "{timestamp}:{url}:{body}", "id_header": "X-Acme-Delivery"}


def signed(conn: dict[str, Any], body: bytes, secret: str = SECRET, skew_s: float = 0) -> dict[str, str]:
    stamp = str(int((time.time() + skew_s) * 1000))
    message = f"{stamp}:{conn['webhook_url']}:".encode() + body
    signature = base64.b64encode(hmac_sha(secret, message, "sha512")).decode()
    return {"X-Acme-Signature": f"v1={signature}", "X-Acme-Timestamp": stamp, "X-Acme-Delivery": "d-1",
            "content-type": "application/json"}


@pytest.mark.parametrize(
    "settings",
    [
        {},  # header is required
        {"header": "X-Sig", "algorithm": "md5"},
        {"header": "X-Sig", "encoding": "base32"},
        {"header": "bad header"},
        {"header": "X-Sig", "template": "{timestamp}.{body}"},  # signs a timestamp that is never sent
        {"header": "X-Sig", "timestamp_header": "X-Ts", "template": "{body}"},  # an unsigned timestamp
        {"header": "X-Sig", "template": "{body}{body}"},
        {"header": "X-Sig", "template": "{nonce}.{body}"},
        {"header": "X-Sig", "timestamp_header": "X-Ts", "tolerance_s": 0},
        {"header": "X-Sig", "colour": "blue"},
    ],
)
async def test_invalid_settings_are_a_400_at_creation(system: System, settings: dict[str, Any]) -> None:
    status, data = await system.api(
        "POST", "/v1/connections", json={"account_id": "a", "provider": "generic-hmac", "settings": settings}
    )
    assert status == 400, data
    assert data["error"]["code"] == "invalid_settings"


async def test_configured_scheme_connects(system: System) -> None:
    conn = await connection(system, "generic-hmac", secret=SECRET, settings=SETTINGS)
    delivery = await accepted(system, conn, EVENT, signed(conn, EVENT))
    assert delivery["event_id"] == "d-1"
    assert delivery["event_type"] == "order.created"


async def test_defaults_are_hex_sha256_over_the_body(system: System) -> None:
    conn = await connection(system, "generic-hmac", settings={"header": "X-Signature", "prefix": "sha256="})
    headers = {"X-Signature": "sha256=" + hmac_sha(conn["secret"], EVENT).hex()}
    delivery = await accepted(system, conn, EVENT, headers)
    assert delivery["event_id"] == "evt_42"


async def test_sha1_hex_without_prefix(system: System) -> None:
    conn = await connection(system, "generic-hmac", secret=SECRET, settings={"header": "X-Sig", "algorithm": "sha1"})
    await accepted(system, conn, EVENT, {"X-Sig": hmac_sha(SECRET, EVENT, "sha1").hex()})


async def test_tampered_wrong_secret_and_stale_are_refused(system: System) -> None:
    def tampered(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return EVENT.replace(b"10", b"99"), signed(conn, EVENT)

    def other_secret(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return EVENT, signed(conn, EVENT, "another-secret-0123456789")

    def stale(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return EVENT, signed(conn, EVENT, skew_s=-180)

    def missing(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        headers = signed(conn, EVENT)
        del headers["X-Acme-Timestamp"]
        return EVENT, headers

    await expect_rejections(
        system, "generic-hmac",
        [(tampered, "signature_mismatch"), (other_secret, "signature_mismatch"), (stale, "timestamp_too_old"),
         (missing, "missing_header")],
        secret=SECRET, settings=SETTINGS,
    )
