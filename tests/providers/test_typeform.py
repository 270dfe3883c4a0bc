"""Typeform through the running receiver. Typeform has no signing SDK; requests are signed as its
"Secure your webhooks" page specifies (reproduced in ``typeform_reference_verify``)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson

from tests.providers.flow import accepted, connection, hmac_sha, rejected
from tests.system import System

SECRET = "b2f7d1c0a9e8f7d6c5b4a39281706f5e4d3c2b1a"  # like `SecureRandom.hex(20)` from Typeform's docs
BODY = orjson.dumps(
    {"event_id": "01GZ1T9H7E4D2VW2E6RFYJ0X7S", "event_type": "form_response",
     "form_response": {"form_id": "lT4Z3j", "token": "a3a12ec67a1365927098a606107fac15",
                       "answers": [{"type": "text", "text": "It's great!"}]}}
)


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    signature = "sha256=" + base64.b64encode(hmac_sha(secret, body)).decode()
    return {"Typeform-Signature": signature, "content-type": "application/json"}


def typeform_reference_verify(received: str, body: bytes, secret: str) -> bool:
    """Typeform's documented check: 'sha256=' + base64(HMAC-SHA256(secret, payload))."""
    actual = "sha256=" + base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(actual, received)


def test_test_signer_agrees_with_the_documented_check() -> None:
    assert typeform_reference_verify(signed(BODY)["Typeform-Signature"], BODY, SECRET)


async def test_signed_response_connects(system: System) -> None:
    conn = await connection(system, "typeform", secret=SECRET)
    delivery = await accepted(system, conn, BODY, signed(BODY))
    assert delivery["event_type"] == "form_response"
    assert delivery["event_id"] == "typeform:01GZ1T9H7E4D2VW2E6RFYJ0X7S"


async def test_generated_secret_works_once_pasted_into_typeform(system: System) -> None:
    conn = await connection(system, "typeform")
    await accepted(system, conn, BODY, signed(BODY, conn["secret"]))


async def test_tampered_body_is_refused(system: System) -> None:
    conn = await connection(system, "typeform", secret=SECRET)
    await rejected(system, conn, BODY.replace(b"great", b"awful"), signed(BODY), "signature_mismatch")


async def test_wrong_secret_is_refused(system: System) -> None:
    conn = await connection(system, "typeform", secret=SECRET)
    await rejected(system, conn, BODY, signed(BODY, "not-the-typeform-secret"), "signature_mismatch")


async def test_hex_digest_instead_of_base64_is_malformed(system: System) -> None:
    conn = await connection(system, "typeform", secret=SECRET)
    headers = {"Typeform-Signature": "sha256=" + hmac_sha(SECRET, BODY).hex() + "!"}
    await rejected(system, conn, BODY, headers, "malformed_signature")
