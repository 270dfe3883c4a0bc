"""Zoom through the running receiver. Zoom publishes no Python signing library; requests are signed as
its docs ("Using webhooks -> Verify webhook events") describe: ``v0=`` + hex HMAC-SHA256 of
``v0:{x-zm-request-timestamp}:{body}`` with the app's secret token."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import orjson

from tests.providers.flow import accepted, connection, deliver
from tests.providers.kit import expect_rejections, handshake
from tests.system import System

SECRET = "cEmcnHb6RG2vXYJwCZtjZg"
MEETING = orjson.dumps({"event": "meeting.started", "event_ts": 1626230691572,
                        "payload": {"account_id": "AAAAAABBBB", "object": {"id": "1234567890"}}})


def signed(body: bytes, secret: str = SECRET, skew_s: int = 0) -> dict[str, str]:
    timestamp = str(int(time.time()) + skew_s)
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"x-zm-signature": f"v0={digest}", "x-zm-request-timestamp": timestamp,
            "content-type": "application/json"}


async def test_event_connects(system: System) -> None:
    conn = await connection(system, "zoom", secret=SECRET)
    delivery = await accepted(system, conn, MEETING, signed(MEETING))
    assert delivery["event_type"] == "meeting.started"


async def test_url_validation_is_answered_at_once_and_connects(system: System) -> None:
    conn = await connection(system, "zoom", secret=SECRET)
    plain = "qgg8vlvZRS6UYooatFL8Aw"
    body = orjson.dumps({"payload": {"plainToken": plain}, "event_ts": 1654503849680,
                         "event": "endpoint.url_validation"})
    status, reply = await handshake(system, conn, body, signed(body))
    assert status == 200
    expected = hmac.new(SECRET.encode(), plain.encode(), hashlib.sha256).hexdigest()
    assert reply == {"plainToken": plain, "encryptedToken": expected}


async def test_url_validation_with_a_bad_signature_is_not_answered(system: System) -> None:
    conn = await connection(system, "zoom", secret=SECRET)
    body = orjson.dumps({"payload": {"plainToken": "abc"}, "event": "endpoint.url_validation"})
    status, reply = await deliver(system, conn, body, signed(body, "wrong-secret-token"))
    assert status == 401 and reply["error"]["code"] == "signature_mismatch"


async def test_tampered_wrong_secret_and_stale_are_refused(system: System) -> None:
    def tampered(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return MEETING.replace(b"started", b"ended"), signed(MEETING)

    def other_secret(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return MEETING, signed(MEETING, "another-secret-token")

    def stale(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return MEETING, signed(MEETING, skew_s=-3600)

    await expect_rejections(
        system, "zoom",
        [(tampered, "signature_mismatch"), (other_secret, "signature_mismatch"), (stale, "timestamp_too_old")],
        secret=SECRET,
    )
