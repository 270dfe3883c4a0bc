"""Slack through the running receiver, signed by Slack's own SDK
(``slack_sdk.signature.SignatureVerifier.generate_signature``), and the example in Slack's docs
("Verifying requests from Slack")."""

from __future__ import annotations

import time
from typing import Any

import orjson
from slack_sdk.signature import SignatureVerifier

from shared.providers.base import InboundRequest
from shared.providers.slack import Slack
from tests.providers.flow import accepted, connection, deliver
from tests.providers.kit import expect_rejections, handshake
from tests.system import System

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the docs' example signing secret
DOC_TIMESTAMP = "1531420618"
DOC_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&"
    b"channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&"
    b"response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
DOC_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
EVENT = orjson.dumps({"type": "event_callback", "event_id": "Ev08MFMKH6", "team_id": "T1",
                      "event": {"type": "app_mention", "text": "hi"}})


def signed(body: bytes, secret: str = SECRET, skew_s: int = 0) -> dict[str, str]:
    timestamp = str(int(time.time()) + skew_s)
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    return {"X-Slack-Signature": signature, "X-Slack-Request-Timestamp": timestamp,
            "content-type": "application/json"}


def test_documented_example_verifies() -> None:
    headers = {"X-Slack-Signature": DOC_SIGNATURE, "X-Slack-Request-Timestamp": DOC_TIMESTAMP}
    verified = Slack().verify(InboundRequest("POST", "u", headers, {}, DOC_BODY), SECRET, {}, 1531420618)
    assert verified.event_type == "slash_command"


async def test_event_connects(system: System) -> None:
    conn = await connection(system, "slack", secret=SECRET)
    delivery = await accepted(system, conn, EVENT, signed(EVENT))
    assert delivery["event_type"] == "app_mention"
    assert delivery["event_id"] == "slack:Ev08MFMKH6"


async def test_url_verification_is_answered_with_the_challenge_and_connects(system: System) -> None:
    conn = await connection(system, "slack", secret=SECRET)
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    body = orjson.dumps({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": challenge, "type": "url_verification"})
    status, reply = await handshake(system, conn, body, signed(body))
    assert status == 200
    assert reply == challenge.encode()


async def test_unsigned_url_verification_is_not_answered(system: System) -> None:
    conn = await connection(system, "slack", secret=SECRET)
    body = orjson.dumps({"challenge": "abc", "type": "url_verification"})
    status, reply = await deliver(system, conn, body, signed(body, "0" * 32))
    assert status == 401 and reply["error"]["code"] == "signature_mismatch"
    assert b"abc" not in orjson.dumps(reply)


async def test_tampered_wrong_secret_and_stale_are_refused(system: System) -> None:
    def tampered(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return EVENT.replace(b"hi", b"ho"), signed(EVENT)

    def other_secret(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return EVENT, signed(EVENT, "f" * 32)

    def stale(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return EVENT, signed(EVENT, skew_s=-400)

    def future(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return EVENT, signed(EVENT, skew_s=+400)

    await expect_rejections(
        system, "slack",
        [(tampered, "signature_mismatch"), (other_secret, "signature_mismatch"), (stale, "timestamp_too_old"),
         (future, "timestamp_too_new")],
        secret=SECRET,
    )
