"""Twilio through the running receiver, signed by Twilio's own SDK
(``twilio.request_validator.RequestValidator.compute_signature``), and the example in Twilio's docs
("Webhooks security": auth token 12345, https://mycompany.com/myapp.php?foo=1&bar=2)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from shared.providers.base import InboundRequest
from shared.providers.twilio import Twilio
from tests.providers.flow import accepted, connection, deliver
from tests.providers.kit import expect_rejections
from tests.system import System

TOKEN = "12345"
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
              "From": "+12349013030", "To": "+18005551212"}
DOC_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
AUTH_TOKEN = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
SMS = {"MessageSid": "SM1", "AccountSid": "AC1", "From": "+15005550006", "To": "+15005550001",
       "Body": "hello", "MessageStatus": "received"}


def form(params: dict[str, str]) -> bytes:
    return urlencode(params).encode()


def signed(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> dict[str, str]:
    signature = RequestValidator(token).compute_signature(url, params)
    return {"X-Twilio-Signature": signature, "content-type": "application/x-www-form-urlencoded"}


def test_documented_example_verifies_over_the_given_url() -> None:
    assert RequestValidator(TOKEN).compute_signature(DOC_URL, DOC_PARAMS) == DOC_SIGNATURE
    request = InboundRequest("POST", DOC_URL, {"X-Twilio-Signature": DOC_SIGNATURE}, {}, form(DOC_PARAMS))
    Twilio().verify(request, TOKEN, {}, 0)


async def test_sms_webhook_connects(system: System) -> None:
    conn = await connection(system, "twilio", secret=AUTH_TOKEN)
    delivery = await accepted(system, conn, form(SMS), signed(conn["webhook_url"], SMS))
    assert delivery["event_type"] == "received"


async def test_query_string_is_part_of_the_signed_url(system: System) -> None:
    conn = await connection(system, "twilio", secret=AUTH_TOKEN)
    url = conn["webhook_url"] + "?site=eu&b=2"
    await accepted(system, conn, form(SMS), signed(url, SMS), query="site=eu&b=2")


async def test_json_body_with_body_sha256(system: System) -> None:
    conn = await connection(system, "twilio", secret=AUTH_TOKEN)
    body = json.dumps({"event": "com.twilio.messaging.message.delivered", "sid": "SM2"}).encode()
    query = urlencode({"bodySHA256": RequestValidator(AUTH_TOKEN).compute_hash(body.decode())})
    signature = RequestValidator(AUTH_TOKEN).compute_signature(conn["webhook_url"] + "?" + query, {})
    headers = {"X-Twilio-Signature": signature, "content-type": "application/json"}
    await accepted(system, conn, body, headers, query=query)
    # The same signature over an altered body: the body no longer matches bodySHA256.
    other = await connection(system, "twilio", secret=AUTH_TOKEN)
    sig = RequestValidator(AUTH_TOKEN).compute_signature(other["webhook_url"] + "?" + query, {})
    status, reply = await deliver(system, other, body + b" ", {**headers, "X-Twilio-Signature": sig}, query=query)
    assert status == 401 and reply["error"]["code"] == "signature_mismatch"


async def test_host_header_does_not_change_the_signed_url(system: System) -> None:
    """A request signed for the Host it arrived with (not our webhook URL) is refused."""
    conn = await connection(system, "twilio", secret=AUTH_TOKEN)
    forged_url = conn["webhook_url"].replace("127.0.0.1", "evil.example")
    headers = {**signed(forged_url, SMS), "Host": "evil.example"}
    status, reply = await deliver(system, conn, form(SMS), headers)
    assert status == 401 and reply["error"]["code"] == "signature_mismatch"


async def test_tampered_and_wrong_token_are_refused(system: System) -> None:
    def tampered(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return form({**SMS, "Body": "HELLO"}), signed(conn["webhook_url"], SMS)

    def other_token(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return form(SMS), signed(conn["webhook_url"], SMS, "0" * 32)

    await expect_rejections(
        system, "twilio", [(tampered, "signature_mismatch"), (other_token, "signature_mismatch")],
        secret=AUTH_TOKEN,
    )
