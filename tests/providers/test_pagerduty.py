"""PagerDuty v3 webhooks through the running receiver, signed as PagerDuty's "Verifying Signatures" page
specifies (its reference verifier is reproduced in ``pagerduty_reference_verify``)."""

from __future__ import annotations

import hashlib
import hmac

import orjson

from tests.providers.flow import accepted, connection, hmac_sha, rejected
from tests.system import System

SECRET = "pd-wh-secret-" + "z" * 20
PING = orjson.dumps(
    {"event": {"id": "01BZ6XDN9RZ3FQ2LRA1YBK7XCG", "event_type": "pagey.ping", "resource_type": "pagey",
               "occurred_at": "2021-11-03T16:40:05.000Z", "data": {"message": "Hello from your friend Pagey!",
               "type": "ping"}}}
)
TRIGGERED = orjson.dumps(
    {"event": {"id": "5ac64822-4adc-4fda-ade0-410becf0de4f", "event_type": "incident.triggered",
               "resource_type": "incident", "data": {"id": "PGR0VU2", "type": "incident"}}}
)


def signed(body: bytes, *secrets: str) -> dict[str, str]:
    signatures = ",".join("v1=" + hmac_sha(s, body).hex() for s in secrets or (SECRET,))
    return {"X-PagerDuty-Signature": signatures, "content-type": "application/json"}


def pagerduty_reference_verify(key: str, payload: str, signatures: str) -> bool:
    """The Python verifier from PagerDuty's docs, as published (version "v1")."""
    signature = hmac.new(key.encode("ASCII"), payload.encode(), hashlib.sha256).hexdigest()
    return any(hmac.compare_digest("v1=" + signature, item) for item in signatures.split(","))


def test_test_signer_agrees_with_pagerduty_reference_verifier() -> None:
    header = signed(TRIGGERED, "old-secret-1234", SECRET)["X-PagerDuty-Signature"]
    assert pagerduty_reference_verify(SECRET, TRIGGERED.decode(), header)
    assert not pagerduty_reference_verify("other", TRIGGERED.decode(), header)


async def test_pagey_ping_connects_and_is_a_test(system: System) -> None:
    conn = await connection(system, "pagerduty", secret=SECRET)
    delivery = await accepted(system, conn, PING, signed(PING))
    assert delivery["is_test"] is True
    assert delivery["event_type"] == "pagey.ping"


async def test_any_of_several_signatures_may_match(system: System) -> None:
    # While PagerDuty rotates a secret it sends one v1 per secret.
    conn = await connection(system, "pagerduty", secret=SECRET)
    delivery = await accepted(system, conn, TRIGGERED, signed(TRIGGERED, "rotated-out-secret", SECRET))
    assert delivery["event_type"] == "incident.triggered"
    assert delivery["is_test"] is False


async def test_tampered_body_is_refused(system: System) -> None:
    conn = await connection(system, "pagerduty", secret=SECRET)
    await rejected(system, conn, TRIGGERED.replace(b"PGR0VU2", b"PXXXXXX"), signed(TRIGGERED),
                   "signature_mismatch")


async def test_wrong_secret_is_refused(system: System) -> None:
    conn = await connection(system, "pagerduty", secret=SECRET)
    await rejected(system, conn, PING, signed(PING, "not-the-subscription-secret"), "signature_mismatch")


async def test_header_without_v1_entry_is_malformed(system: System) -> None:
    conn = await connection(system, "pagerduty", secret=SECRET)
    headers = {"X-PagerDuty-Signature": "v2=abcdef"}
    await rejected(system, conn, PING, headers, "malformed_signature")


async def test_previous_secret_still_verifies_during_a_rotation(system: System) -> None:
    conn = await connection(system, "pagerduty", secret=SECRET)
    new_secret = "pd-wh-secret-rotated-" + "y" * 16
    status, view = await system.api(
        "POST", f"/v1/connections/{conn['id']}/reconnect", json={"secret": new_secret}
    )
    assert status == 200, view
    await accepted(system, conn, TRIGGERED, signed(TRIGGERED))  # still signed with the old secret
    view = await system.get(conn["id"])
    assert view["previous_secret_active"] is True
    assert view["previous_secret_last_used_at"] is not None
