"""Linear through the running receiver. Linear publishes no Python SDK; requests are signed as its docs
and its TypeScript SDK (``LinearWebhooks.verify``) define: hex HMAC-SHA256 of the raw body, with the
body's ``webhookTimestamp`` in milliseconds and a 60 s window."""

from __future__ import annotations

import uuid

import orjson

from shared.providers.base import InboundRequest
from shared.providers.linear import Linear
from tests.providers.flow import accepted, connection, hmac_sha, now_s, rejected
from tests.system import System

SECRET = "lin_wh_" + "k3y" * 10


def event(skew_s: float = 0) -> bytes:
    # The shape of the comment event in Linear's SDK tests, with a current timestamp.
    return orjson.dumps(
        {"action": "create", "type": "Comment", "data": {"id": "2174add1-f7c8-44e3-bbf3-2d60b5ea8bc9",
         "body": "Indeed, I think this is definitely an improvement."},
         "url": "https://linear.app/issue/LIN-1778/foo-bar", "webhookTimestamp": now_s(skew_s) * 1000}
    )


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {
        "Linear-Signature": hmac_sha(secret, body).hex(),
        "Linear-Delivery": str(uuid.uuid4()),
        "Linear-Event": "Comment",
        "content-type": "application/json",
    }


async def test_signed_event_connects(system: System) -> None:
    conn = await connection(system, "linear", secret=SECRET)
    body = event()
    headers = signed(body)
    delivery = await accepted(system, conn, body, headers)
    assert delivery["event_type"] == "Comment.create"
    assert delivery["event_id"] == f"linear:{headers['Linear-Delivery']}"


async def test_tampered_body_is_refused(system: System) -> None:
    conn = await connection(system, "linear", secret=SECRET)
    body = event()
    await rejected(system, conn, body.replace(b"Indeed", b"Indead"), signed(body), "signature_mismatch")


async def test_wrong_secret_is_refused(system: System) -> None:
    conn = await connection(system, "linear", secret=SECRET)
    body = event()
    await rejected(system, conn, body, signed(body, "lin_wh_not-the-right-one"), "signature_mismatch")


async def test_stale_body_timestamp_is_refused(system: System) -> None:
    conn = await connection(system, "linear", secret=SECRET)
    body = event(skew_s=-120)  # Linear allows 60 s
    await rejected(system, conn, body, signed(body), "timestamp_too_old")


def test_sdk_test_body_verifies_and_its_old_timestamp_does_not() -> None:
    """Linear's SDK test: a body signed with "SECRET" whose webhookTimestamp (2023-02-28) is long past.

    As in that test, the signature is right but the timestamp fails; an hour after it, still stale; at
    its own time it passes."""
    body = orjson.dumps(
        {"action": "create", "type": "Comment", "createdAt": "2020-01-23T12:53:18.084Z",
         "webhookTimestamp": 1677611643000}
    )
    request = InboundRequest("POST", "https://x/hooks/1", signed(body, "SECRET"), {}, body)
    verified = Linear().verify(request, "SECRET", {}, 1677611643.5)
    assert verified.event_type == "Comment.create"
    try:
        Linear().verify(request, "SECRET", {}, 1677611643 + 3600)
    except Exception as exc:  # noqa: BLE001 - the project's VerificationError
        assert getattr(exc, "code", None) == "timestamp_too_old"
    else:
        raise AssertionError("a stale webhookTimestamp verified")


async def test_body_without_timestamp_is_refused_like_linears_sdk(system: System) -> None:
    conn = await connection(system, "linear", secret=SECRET)
    body = orjson.dumps({"action": "update", "type": "Issue", "data": {"id": "x"}})
    reply = await rejected(system, conn, body, signed(body), "missing_header")
    assert "webhookTimestamp" in reply["error"]["message"]


async def test_timestamp_that_is_not_milliseconds_is_malformed(system: System) -> None:
    conn = await connection(system, "linear", secret=SECRET)
    body = orjson.dumps({"action": "update", "type": "Issue", "webhookTimestamp": "yesterday"})
    await rejected(system, conn, body, signed(body), "malformed_timestamp")
