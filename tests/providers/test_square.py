"""Square through the running receiver, and the signature vector published in Square's own SDK tests
(square-python-sdk ``tests/utilities/test_webhooks_helper.py``)."""

from __future__ import annotations

import base64

import orjson
import pytest

from shared.errors import VerificationError
from shared.providers import PROVIDERS
from shared.providers.base import InboundRequest
from tests.providers.flow import accepted, connection, hmac_sha, rejected
from tests.system import System

# Square's published vector: key, notification URL, body and the x-square-hmacsha256-signature.
VECTOR_KEY = "Ibxx_5AKakO-3qeNVR61Dw"
VECTOR_URL = "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9"
VECTOR_BODY = (
    b'{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification",'
    b'"event_id":"ac3ac95b-f97d-458c-a6e6-18981597e05f","created_at":"2022-07-13T20:30:59.037339943Z",'
    b'"data":{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}'
)
VECTOR_SIGNATURE = "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4="

KEY = "s1gnatureKey_Abc123xyz0"
PAYMENT = orjson.dumps(
    {"merchant_id": "6SSW7HV8K2ST5", "type": "payment.updated", "event_id": "b2f2a7d0-5e1c-4f0a-9d1b-1",
     "data": {"type": "payment", "id": "KkAkhdMsgzn59SM8A89WgKwekxLZY"}}
)


def signed(url: str, body: bytes, key: str = KEY) -> dict[str, str]:
    signature = base64.b64encode(hmac_sha(key, url.encode() + body)).decode()
    return {"x-square-hmacsha256-signature": signature, "content-type": "application/json"}


def vector_request(url: str = VECTOR_URL, body: bytes = VECTOR_BODY) -> InboundRequest:
    headers = {"x-square-hmacsha256-signature": VECTOR_SIGNATURE}
    return InboundRequest("POST", url, headers, {}, body)


def test_published_vector_verifies_as_a_test_event() -> None:
    verified = PROVIDERS["square"].verify(vector_request(), VECTOR_KEY, {}, 0)
    assert verified.is_test
    assert verified.event_type == "webhooks.test_notification"


@pytest.mark.parametrize(
    ("url", "body", "key"),
    [
        ("https://webhook.site/79a4f3a-dcfa-49ee-bac5-9d0edad886b9", VECTOR_BODY, VECTOR_KEY),  # URL
        (VECTOR_URL, VECTOR_BODY.replace(b"2022-07-13", b"2022-06-13"), VECTOR_KEY),  # body
        (VECTOR_URL, VECTOR_BODY, "MCmhFRxGX82xMwg5FsaoQA"),  # key
    ],
)
def test_published_vector_refuses_what_square_refuses(url: str, body: bytes, key: str) -> None:
    with pytest.raises(VerificationError) as caught:
        PROVIDERS["square"].verify(vector_request(url, body), key, {}, 0)
    assert caught.value.code == "signature_mismatch"


async def test_signed_event_connects(system: System) -> None:
    conn = await connection(system, "square", secret=KEY)
    delivery = await accepted(system, conn, PAYMENT, signed(conn["webhook_url"], PAYMENT))
    assert delivery["event_type"] == "payment.updated"
    assert delivery["is_test"] is False


async def test_send_test_event_connects_and_is_marked_as_test(system: System) -> None:
    conn = await connection(system, "square", secret=KEY)
    delivery = await accepted(system, conn, VECTOR_BODY, signed(conn["webhook_url"], VECTOR_BODY))
    assert delivery["is_test"] is True
    assert delivery["event_type"] == "webhooks.test_notification"


async def test_legacy_sha1_signature_is_accepted(system: System) -> None:
    conn = await connection(system, "square", secret=KEY)
    legacy = base64.b64encode(hmac_sha(KEY, conn["webhook_url"].encode() + PAYMENT, "sha1")).decode()
    await accepted(system, conn, PAYMENT, {"x-square-signature": legacy})


async def test_tampered_body_is_refused(system: System) -> None:
    conn = await connection(system, "square", secret=KEY)
    headers = signed(conn["webhook_url"], PAYMENT)
    await rejected(system, conn, PAYMENT.replace(b"payment.updated", b"payment.created"), headers,
                   "signature_mismatch")


async def test_wrong_key_is_refused(system: System) -> None:
    conn = await connection(system, "square", secret=KEY)
    await rejected(system, conn, PAYMENT, signed(conn["webhook_url"], PAYMENT, "another-signature-key"),
                   "signature_mismatch")


async def test_signature_over_another_notification_url_is_refused(system: System) -> None:
    conn = await connection(system, "square", secret=KEY)
    await rejected(system, conn, PAYMENT, signed(VECTOR_URL, PAYMENT), "signature_mismatch")
