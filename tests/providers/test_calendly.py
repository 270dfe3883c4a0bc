"""Calendly through the running receiver. Calendly has no signing SDK; requests are signed as its
"Webhook Signatures" page specifies (reproduced in ``calendly_reference_verify``): ``t=<unix>,v1=<hex>``,
HMAC-SHA256 over ``"{t}.{body}"``, 3 minute tolerance."""

from __future__ import annotations

import hashlib
import hmac

import orjson

from tests.providers.flow import accepted, connection, hmac_sha, now_s, rejected
from tests.system import System

KEY = "cal-signing-key-" + "0123456789abcdef" * 2
BODY = orjson.dumps(
    {"created_at": "2026-11-27T16:00:00.000000Z", "created_by": "https://api.calendly.com/users/AAAA",
     "event": "invitee.created",
     "payload": {"uri": "https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2/invitees/AAAAA",
                 "email": "test@example.com", "status": "active"}}
)


def signed(body: bytes, key: str = KEY, skew_s: float = 0) -> dict[str, str]:
    t = str(now_s(skew_s))
    signature = hmac_sha(key, f"{t}.".encode() + body).hex()
    return {"Calendly-Webhook-Signature": f"t={t},v1={signature}", "content-type": "application/json"}


def calendly_reference_verify(header: str, body: str, key: str) -> bool:
    """The documented check: split on ',', take t and v1, HMAC-SHA256 over '{t}.{body}', compare."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(key.encode(), f"{parts['t']}.{body}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def test_test_signer_agrees_with_the_documented_check() -> None:
    header = signed(BODY)["Calendly-Webhook-Signature"]
    assert calendly_reference_verify(header, BODY.decode(), KEY)
    assert not calendly_reference_verify(header, BODY.decode(), "other-key-123")


async def test_signed_event_connects(system: System) -> None:
    conn = await connection(system, "calendly", secret=KEY)
    delivery = await accepted(system, conn, BODY, signed(BODY))
    assert delivery["event_type"] == "invitee.created"


async def test_generated_key_can_be_set_on_the_subscription(system: System) -> None:
    # With a personal access token the user sets signing_key on the subscription: ours works.
    conn = await connection(system, "calendly")
    assert len(conn["secret"]) >= 32
    await accepted(system, conn, BODY, signed(BODY, conn["secret"]))


async def test_tampered_body_is_refused(system: System) -> None:
    conn = await connection(system, "calendly", secret=KEY)
    await rejected(system, conn, BODY.replace(b"active", b"canceled"), signed(BODY), "signature_mismatch")


async def test_wrong_key_is_refused(system: System) -> None:
    conn = await connection(system, "calendly", secret=KEY)
    await rejected(system, conn, BODY, signed(BODY, "some-other-signing-key"), "signature_mismatch")


async def test_stale_timestamp_is_refused(system: System) -> None:
    conn = await connection(system, "calendly", secret=KEY)
    await rejected(system, conn, BODY, signed(BODY, skew_s=-400), "timestamp_too_old")


async def test_header_without_v1_is_malformed(system: System) -> None:
    conn = await connection(system, "calendly", secret=KEY)
    headers = {"Calendly-Webhook-Signature": f"t={now_s()}"}
    await rejected(system, conn, BODY, headers, "malformed_signature")


async def test_timestamp_from_the_future_is_refused(system: System) -> None:
    conn = await connection(system, "calendly", secret=KEY)
    await rejected(system, conn, BODY, signed(BODY, skew_s=+400), "timestamp_too_new")
