"""Paddle Billing through the running receiver. Paddle's SDKs only verify, so each request is signed as
Paddle documents it and checked by Paddle's own Python SDK verifier (``paddle_billing.Notifications``)
before it is sent."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest
from paddle_billing.Notifications import Secret, Verifier  # type: ignore[import-untyped]

from shared.errors import VerificationError
from shared.providers import PROVIDERS
from shared.providers.base import InboundRequest
from tests.providers.flow import accepted, connection, hmac_sha, now_s, rejected
from tests.system import System

KEY = "pdl_ntfset_01gkpjp8bkm3tm53kdgkx6sms7_6h3qd3uFSi9YCD3OLYAShQI90XTI5vEI"
BODY = orjson.dumps(
    {"event_id": "evt_01h8bzakzx3hm2fmen703n5q45", "event_type": "transaction.completed",
     "occurred_at": "2026-11-27T16:30:00.000000Z", "notification_id": "ntf_01h8bzam1z32agrxjwhjgqk8w6",
     "data": {"id": "txn_01h8bz8x0mb0r9t0e5z4q1c9a6", "status": "completed"}}
)


@dataclass
class SdkRequest:
    """What paddle_billing's Verifier reads: headers and the raw body."""

    headers: dict[str, str]
    body: bytes


def signed(body: bytes, *keys: str, skew_s: float = 0) -> dict[str, str]:
    ts = str(now_s(skew_s))
    h1 = ";".join("h1=" + hmac_sha(k, f"{ts}:".encode() + body).hex() for k in keys or (KEY,))
    return {"Paddle-Signature": f"ts={ts};{h1}", "content-type": "application/json"}


def sdk_accepts(headers: dict[str, str], body: bytes, key: str = KEY) -> bool:
    return bool(Verifier().verify(SdkRequest(headers, body), Secret(key)))


# The vector in paddle-python-sdk's own tests (tests/Unit/Notification/test_Verifier.py): a placeholder
# h1 plus a real one, body 'hello-world', and three secrets of which only the last one signed it.
VECTOR_HEADER = "ts=1696195954;h1=dummy;h1=d96299976a6eb066f484d7fde011ac56fc32b38fc9940bc419d6e537fdc6ef02"
VECTOR_SIGNER = "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_WvRO0eL4Bj9rgYYIBZY6wZhG4EHy9jzh"
VECTOR_OTHERS = (
    "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_TjIG2BXbm83HPXqNfziwe506sBEdqL/4",
    "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_vB/yIOnTOCWIvpBadM5jzBZPHc7OmdSo",
)


def vector_request() -> InboundRequest:
    return InboundRequest("POST", "https://x/hooks/1", {"Paddle-Signature": VECTOR_HEADER}, {}, b"hello-world")


def test_sdk_published_vector_verifies_with_its_signing_secret() -> None:
    verified = PROVIDERS["paddle"].verify(vector_request(), VECTOR_SIGNER, {}, 1696195954 + 1)
    assert verified.event_id and verified.event_id.startswith("sha256:")


@pytest.mark.parametrize("secret", VECTOR_OTHERS)
def test_sdk_published_vector_refuses_the_other_secrets(secret: str) -> None:
    with pytest.raises(VerificationError) as caught:
        PROVIDERS["paddle"].verify(vector_request(), secret, {}, 1696195954 + 1)
    assert caught.value.code == "signature_mismatch"


def test_sdk_published_vector_is_stale_today() -> None:
    with pytest.raises(VerificationError) as caught:
        PROVIDERS["paddle"].verify(vector_request(), VECTOR_SIGNER, {}, 1696195954 + 3600)
    assert caught.value.code == "timestamp_too_old"


async def test_sdk_verified_event_connects(system: System) -> None:
    conn = await connection(system, "paddle", secret=KEY)
    headers = signed(BODY)
    assert sdk_accepts(headers, BODY)
    delivery = await accepted(system, conn, BODY, headers)
    assert delivery["event_type"] == "transaction.completed"
    assert delivery["event_id"] == "paddle:evt_01h8bzakzx3hm2fmen703n5q45"


async def test_several_h1_values_during_a_rotation(system: System) -> None:
    conn = await connection(system, "paddle", secret=KEY)
    headers = signed(BODY, "pdl_ntfset_old_secret_value", KEY)
    assert sdk_accepts(headers, BODY)
    await accepted(system, conn, BODY, headers)


async def test_tampered_body_is_refused(system: System) -> None:
    conn = await connection(system, "paddle", secret=KEY)
    headers = signed(BODY)
    tampered = BODY.replace(b"completed", b"refunded_")
    assert not sdk_accepts(headers, tampered)
    await rejected(system, conn, tampered, headers, "signature_mismatch")


async def test_wrong_secret_is_refused(system: System) -> None:
    conn = await connection(system, "paddle", secret=KEY)
    headers = signed(BODY, "pdl_ntfset_someone_elses_destination")
    assert not sdk_accepts(headers, BODY)
    await rejected(system, conn, BODY, headers, "signature_mismatch")


async def test_stale_timestamp_is_refused_like_the_sdk(system: System) -> None:
    conn = await connection(system, "paddle", secret=KEY)
    headers = signed(BODY, skew_s=-60)  # Paddle's SDK allows 5 s
    assert not sdk_accepts(headers, BODY)
    await rejected(system, conn, BODY, headers, "timestamp_too_old")
