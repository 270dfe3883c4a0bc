"""Svix and Standard Webhooks through the running receiver: v1 (HMAC) signed by the ``svix`` and
``standardwebhooks`` packages' ``Webhook.sign``; v1a (ed25519) signed with ``cryptography`` exactly as the
Standard Webhooks spec describes (neither package signs v1a)."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from standardwebhooks import Webhook as StandardWebhook
from svix.webhooks import Webhook as SvixWebhook

from shared.errors import VerificationError
from shared.providers import PROVIDERS
from shared.providers.base import InboundRequest
from tests.providers.flow import accepted, connection, rejected
from tests.providers.kit import expect_rejections
from tests.system import System

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the example secret of Svix's docs
EVENT = orjson.dumps({"type": "invoice.paid", "data": {"id": "inv_1", "amount": 1200}})


def svix_headers(body: bytes, secret: str = SECRET, skew_s: int = 0, prefix: str = "svix") -> dict[str, str]:
    msg_id = f"msg_{uuid.uuid4().hex}"
    at = datetime.now(tz=UTC) + timedelta(seconds=skew_s)
    signature = SvixWebhook(secret).sign(msg_id, at, body.decode())
    return {f"{prefix}-id": msg_id, f"{prefix}-timestamp": str(int(at.timestamp())),
            f"{prefix}-signature": signature, "content-type": "application/json"}


def key_pair() -> tuple[Ed25519PrivateKey, str, str]:
    private = Ed25519PrivateKey.generate()
    raw_public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    seed = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return private, "whpk_" + base64.b64encode(raw_public).decode(), "whsk_" + base64.b64encode(seed).decode()


def v1a_headers(private: Ed25519PrivateKey, body: bytes, extra: str = "") -> dict[str, str]:
    """The spec's asymmetric signature: ed25519 over '{id}.{timestamp}.{body}', 'v1a,' + base64."""
    msg_id, timestamp = f"msg_{uuid.uuid4().hex}", str(int(datetime.now(tz=UTC).timestamp()))
    signature = private.sign(f"{msg_id}.{timestamp}.".encode() + body)
    value = (extra + " " if extra else "") + "v1a," + base64.b64encode(signature).decode()
    return {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": value,
            "content-type": "application/json"}


# The example of Svix's docs ("Verifying payloads manually"): secret, headers, payload and signature.
DOC_HEADERS = {"svix-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "svix-timestamp": "1614265330",
               "svix-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
DOC_PAYLOAD = b'{"test": 2432232314}'


@pytest.mark.parametrize("name", ["svix", "standard-webhooks"])
def test_documented_example_verifies(name: str) -> None:
    request = InboundRequest("POST", "u", DOC_HEADERS, {}, DOC_PAYLOAD)
    verified = PROVIDERS[name].verify(request, SECRET, {}, 1614265330 + 10)
    assert verified.event_id == "msg_p5jXN8AQM9LWM0D4loKWxJek"
    with pytest.raises(VerificationError) as caught:
        PROVIDERS[name].verify(request, SECRET, {}, 1614265330 + 400)
    assert caught.value.code == "timestamp_too_old"


@pytest.mark.parametrize("provider", ["svix", "standard-webhooks"])
async def test_svix_signed_event_connects(system: System, provider: str) -> None:
    conn = await connection(system, provider, secret=SECRET)
    delivery = await accepted(system, conn, EVENT, svix_headers(EVENT))
    assert delivery["event_type"] == "invoice.paid"


async def test_standardwebhooks_signed_event_connects_a_svix_connection(system: System) -> None:
    conn = await connection(system, "svix", secret=SECRET)
    msg_id = f"msg_{uuid.uuid4().hex}"
    at = datetime.now(tz=UTC)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
               "webhook-signature": StandardWebhook(SECRET).sign(msg_id, at, EVENT.decode())}
    await accepted(system, conn, EVENT, headers)


async def test_v1a_ed25519_with_the_public_key_connects(system: System) -> None:
    private, public, _ = key_pair()
    conn = await connection(system, "standard-webhooks", secret=public)
    # A v1 entry the connection cannot check comes first, as a sender signing both ways would send it.
    await accepted(system, conn, EVENT, v1a_headers(private, EVENT, extra="v1,AAAA"))


async def test_v1a_key_pair_is_stored_as_its_public_key(system: System) -> None:
    private, public, secret_key = key_pair()
    conn = await connection(system, "svix", secret=secret_key)
    assert conn["secret"] == public  # the private half is never kept
    await accepted(system, conn, EVENT, v1a_headers(private, EVENT))


async def test_v1a_from_another_key_is_refused(system: System) -> None:
    _, public, _ = key_pair()
    other, _, _ = key_pair()
    conn = await connection(system, "svix", secret=public)
    await rejected(system, conn, EVENT, v1a_headers(other, EVENT), "signature_mismatch")


async def test_hmac_signature_for_a_public_key_connection_says_what_to_paste(system: System) -> None:
    _, public, _ = key_pair()
    conn = await connection(system, "svix", secret=public)
    reply = await rejected(system, conn, EVENT, svix_headers(EVENT), "secret_format")
    assert "whsec_" in reply["error"]["message"]


async def test_tampered_wrong_secret_and_stale_are_refused(system: System) -> None:
    def tampered(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return EVENT.replace(b"1200", b"1"), svix_headers(EVENT)

    def other_secret(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return EVENT, svix_headers(EVENT, "whsec_" + base64.b64encode(b"k" * 32).decode())

    def stale(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return EVENT, svix_headers(EVENT, skew_s=-301 - 60)

    await expect_rejections(
        system, "svix",
        [(tampered, "signature_mismatch"), (other_secret, "signature_mismatch"), (stale, "timestamp_too_old")],
        secret=SECRET,
    )
