"""What a rejected delivery says, through the running receiver: the reason code and a message that
says what to do, in the reply, in ``last_error``, in the deliveries list and in a failed connection."""

from __future__ import annotations

import base64
import os
import time
import uuid
from datetime import UTC, datetime

import orjson
import stripe
from slack_sdk.signature import SignatureVerifier
from standardwebhooks import Webhook

from shared.errors import VerificationError
from shared.providers import PROVIDERS
from shared.providers.base import InboundRequest
from shared.providers.diagnosis import secret_variants
from shared.providers.rotation import verify_with_rotation
from tests.providers.flow import connection, hmac_sha, rejected
from tests.providers.kit import delivery_list
from tests.system import System

EVENT = orjson.dumps({"id": "evt_1", "type": "invoice.paid", "livemode": True})
# A Stripe-style secret that is also valid base64 after whsec_, so a Svix connection accepts it.
STRIPE_LIKE = "whsec_4eC39HqLyjWDarjtT1zdp7dcAbCdEfGh"


def stripe_headers(secret: str, skew_s: int = 0) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(EVENT.decode(), secret, int(time.time()) + skew_s)
    return {"Stripe-Signature": header, "content-type": "application/json"}


def standard_headers(secret: str) -> dict[str, str]:
    msg_id, at = f"msg_{uuid.uuid4().hex}", datetime.now(tz=UTC)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, at, EVENT.decode())}


async def test_missing_header_is_named(system: System) -> None:
    conn = await connection(system, "stripe", secret=STRIPE_LIKE)
    reply = await rejected(system, conn, EVENT, {"content-type": "application/json"}, "missing_header")
    assert "Stripe-Signature" in reply["error"]["message"]
    [entry] = await delivery_list(system, conn["id"])
    assert entry["reason"] == "missing_header" and "Stripe-Signature" in entry["message"]


async def test_malformed_signature(system: System) -> None:
    conn = await connection(system, "stripe", secret=STRIPE_LIKE)
    await rejected(system, conn, EVENT, {"Stripe-Signature": f"t={int(time.time())},v1=zz"}, "malformed_signature")
    other = await connection(system, "stripe", secret=STRIPE_LIKE)
    await rejected(system, other, EVENT, {"Stripe-Signature": "t=abc,v1=00"}, "malformed_timestamp")


async def test_stale_timestamp_reports_the_measured_skew(system: System) -> None:
    conn = await connection(system, "stripe", secret=STRIPE_LIKE)
    reply = await rejected(system, conn, EVENT, stripe_headers(STRIPE_LIKE, skew_s=-1000), "timestamp_too_old")
    message = reply["error"]["message"]
    assert any(f"{n} s old" in message for n in range(999, 1010)), message


async def test_stripe_signature_on_a_svix_connection_is_named(system: System) -> None:
    conn = await connection(system, "svix", secret=STRIPE_LIKE)
    reply = await rejected(system, conn, EVENT, stripe_headers(STRIPE_LIKE), "wrong_provider")
    message = reply["error"]["message"]
    assert "This is a Stripe signature" in message and "set up as Svix" in message
    view = await system.get(conn["id"])
    assert view["last_error"]["message"] == message
    [entry] = await delivery_list(system, conn["id"])
    assert entry["reason"] == "wrong_provider" and entry["message"] == message
    assert STRIPE_LIKE not in orjson.dumps(entry).decode()


async def test_another_providers_headers_are_recognised_without_its_secret(system: System) -> None:
    conn = await connection(system, "github", secret="gh-secret-0123456789")
    ts = str(int(time.time()))
    signature = SignatureVerifier("slack-signing-secret-xyz").generate_signature(timestamp=ts, body=EVENT)
    assert signature
    headers = {"X-Slack-Signature": signature, "X-Slack-Request-Timestamp": ts}
    reply = await rejected(system, conn, EVENT, headers, "wrong_provider")
    assert "Slack's headers" in reply["error"]["message"]


async def test_secret_pasted_as_hex_is_recognised(system: System) -> None:
    key = os.urandom(32)
    sender_secret = "whsec_" + base64.b64encode(key).decode()
    conn = await connection(system, "standard-webhooks", secret="whsec_" + key.hex())
    reply = await rejected(system, conn, EVENT, standard_headers(sender_secret), "secret_format")
    assert "converted from hex to base64" in reply["error"]["message"]
    assert key.hex() not in reply["error"]["message"]


async def test_secret_pasted_with_a_whsec_prefix_the_sender_does_not_use(system: System) -> None:
    raw = "0123456789abcdef0123456789abcdef"
    conn = await connection(system, "generic-hmac-sha256", secret="whsec_" + raw)
    headers = {"X-Signature-256": "sha256=" + hmac_sha(raw, EVENT).hex()}
    reply = await rejected(system, conn, EVENT, headers, "secret_format")
    assert "without its whsec_ prefix" in reply["error"]["message"]


async def test_a_pending_connection_that_times_out_says_why(system: System) -> None:
    conn = await connection(system, "svix", secret=STRIPE_LIKE, timeout_s=1)
    await rejected(system, conn, EVENT, stripe_headers(STRIPE_LIKE), "wrong_provider")
    view = await system.wait_for(conn["id"], lambda v: v["state"] == "failed", timeout_s=15)
    assert view["reason"] == "deadline_bad_signatures"
    assert view["failed_detail"]["code"] == "wrong_provider"
    assert "This is a Stripe signature" in view["failed_detail"]["message"]


def test_secret_variants_cover_the_usual_paste_mistakes() -> None:
    key = bytes(range(32))
    b64 = base64.b64encode(key).decode()
    described = dict((how, v) for v, how in secret_variants("v1,whsec_" + b64))
    assert any(v == "whsec_" + b64 for v in described.values())
    described = {how: v for v, how in secret_variants(' "whsec_' + b64 + '"\n')}
    assert described["once the surrounding spaces or quotes are removed"] == "whsec_" + b64
    described = {how: v for v, how in secret_variants(key.hex())}
    assert described["converted from hex to base64, with a whsec_ prefix"] == "whsec_" + b64
    assert all(v for v in described.values())


def test_diagnosis_is_only_reached_for_failures_and_never_raises_something_else() -> None:
    """Every registered provider, fed another provider's request, ends in a VerificationError."""
    request = InboundRequest("POST", "https://x/hooks/1", {**stripe_headers(STRIPE_LIKE), "X-GitHub-Event": "x",
                                                          "X-Hub-Signature-256": "sha256=00"}, {}, EVENT)
    for provider in PROVIDERS.values():
        if provider.name == "stripe":
            continue
        try:
            verify_with_rotation(provider, request, (STRIPE_LIKE, None), {}, time.time())
        except VerificationError as exc:
            assert exc.code and exc.message


def test_other_connection_names_the_sibling_whose_secret_signed_it() -> None:
    from shared.providers.diagnosis import MAX_BODY_BYTES, OTHER_CONNECTION, Sibling, other_connection

    stripe_provider = PROVIDERS["stripe"]
    mine, theirs = "whsec_" + uuid.uuid4().hex, "whsec_" + uuid.uuid4().hex

    def request(secret: str, skew_s: int = 0, body: bytes = EVENT) -> InboundRequest:
        header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, int(time.time()) + skew_s)
        return InboundRequest("POST", "https://hooks.example/h", {"Stripe-Signature": header}, {}, body)

    siblings = [Sibling("a" * 32, "whsec_" + uuid.uuid4().hex), Sibling("b" * 32, theirs)]
    found = other_connection(stripe_provider, request(theirs), siblings, time.time())
    assert found is not None and found.code == OTHER_CONNECTION
    assert found.detail == {"connection_id": "b" * 32} and "b" * 32 in found.message
    assert theirs not in found.message
    # Signed by the sibling an hour ago: the signature matched, so it is still the sibling's secret.
    assert other_connection(stripe_provider, request(theirs, skew_s=-3600), siblings, time.time()) is not None
    assert other_connection(stripe_provider, request(mine), siblings, time.time()) is None
    assert other_connection(stripe_provider, request(theirs), [], time.time()) is None
    big = orjson.dumps({"id": "evt_big", "pad": "x" * MAX_BODY_BYTES})
    assert other_connection(stripe_provider, request(theirs, body=big), siblings, time.time()) is None
