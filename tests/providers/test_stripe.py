"""Stripe through the running receiver, signed by Stripe's own library
(``stripe.WebhookSignature.generate_signature_header``)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import stripe

from shared.providers.base import InboundRequest
from shared.providers.stripe import Stripe
from tests.providers.flow import accepted, connection, deliver, rejected
from tests.providers.kit import expect_rejections
from tests.system import System

SECRET = "whsec_test_4eC39HqLyjWDarjtT1zdp7dc"
OTHER_SECRET = "whsec_test_9rT5kQzX2bLmNw8PvYc3HdJa"


def event(livemode: bool = True, kind: str = "payment_intent.succeeded") -> bytes:
    return orjson.dumps({"id": f"evt_{time.time_ns()}", "object": "event", "type": kind, "livemode": livemode,
                         "data": {"object": {"id": "pi_1", "amount": 2000}}})


def signed(body: bytes, secret: str = SECRET, skew_s: int = 0) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(
        body.decode(), secret, timestamp=int(time.time()) + skew_s
    )
    return {"Stripe-Signature": header, "content-type": "application/json"}


def test_stripe_library_accepts_what_it_signed_and_so_do_we() -> None:
    body = event()
    headers = signed(body)
    stripe.WebhookSignature.verify_header(body, headers["Stripe-Signature"], SECRET, 300)
    verified = Stripe().verify(InboundRequest("POST", "u", headers, {}, body), SECRET, {}, time.time())
    assert verified.event_type == "payment_intent.succeeded" and not verified.is_test


async def test_live_event_connects(system: System) -> None:
    conn = await connection(system, "stripe", secret=SECRET)
    body = event()
    delivery = await accepted(system, conn, body, signed(body))
    assert delivery["event_id"] == orjson.loads(body)["id"]
    assert delivery["is_test"] is False


async def test_test_mode_event_connects_and_is_marked_as_test(system: System) -> None:
    conn = await connection(system, "stripe", secret=SECRET)
    body = event(livemode=False)
    delivery = await accepted(system, conn, body, signed(body))
    assert delivery["is_test"] is True


async def test_tampered_wrong_secret_and_stale_are_refused(system: System) -> None:
    body = event()

    def tampered(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return body.replace(b"2000", b"1"), signed(body)

    def other_secret(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return body, signed(body, OTHER_SECRET)

    def stale(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return body, signed(body, skew_s=-301 - 5)

    await expect_rejections(
        system, "stripe",
        [(tampered, "signature_mismatch"), (other_secret, "signature_mismatch"), (stale, "timestamp_too_old")],
        secret=SECRET,
    )


async def test_connection_created_before_the_secret_waits_for_it(system: System) -> None:
    """Stripe shows the secret only once the endpoint exists: create without one, then reconnect."""
    conn = await connection(system, "stripe")
    body = event()
    reply = await rejected(system, conn, body, signed(body), "secret_not_set")
    assert "reconnect" in reply["error"]["message"]
    status, view = await system.api("POST", f"/v1/connections/{conn['id']}/reconnect", json={"secret": SECRET})
    assert status == 200, view
    assert view["previous_secret_active"] is False  # there was no previous secret to keep
    status, _ = await deliver(system, conn, body, signed(body))
    assert status == 202
    await system.wait_for(conn["id"], lambda v: v["state"] == "connected")


async def test_a_secret_without_whsec_is_refused_at_creation(system: System) -> None:
    status, data = await system.api(
        "POST", "/v1/connections", json={"account_id": "a", "provider": "stripe", "secret": "sk_test_123456789"}
    )
    assert status == 400
    assert data["error"]["code"] == "invalid_secret"
    assert "sk_test_123456789" not in data["error"]["message"]
