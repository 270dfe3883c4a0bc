"""Intercom through the running receiver. Intercom has no Python SDK that signs; requests are signed as
its "Signed notifications" docs specify: ``X-Hub-Signature: sha1=`` + hex HMAC-SHA1(client secret,
body). The "Send test request" button posts the ``ping`` topic."""

from __future__ import annotations

import orjson

from tests.providers.flow import accepted, connection, hmac_sha, rejected
from tests.system import System

CLIENT_SECRET = "7b4c2f0e-1d3a-4e5b-8c6d-9e0f1a2b3c4d"
PING = orjson.dumps(
    {"type": "notification_event", "app_id": "abc123", "topic": "ping", "id": "notif_ping_1",
     "data": {"item": {"type": "ping", "message": "something something interzen"}},
     "created_at": 1700000000}
)
CONVERSATION = orjson.dumps(
    {"type": "notification_event", "app_id": "abc123", "topic": "conversation.user.created",
     "id": "notif_7b5e1f0c", "data": {"item": {"type": "conversation", "id": "1911149811"}}}
)


def signed(body: bytes, secret: str = CLIENT_SECRET) -> dict[str, str]:
    return {"X-Hub-Signature": "sha1=" + hmac_sha(secret, body, "sha1").hex(),
            "content-type": "application/json"}


async def test_ping_connects_and_is_a_test(system: System) -> None:
    conn = await connection(system, "intercom", secret=CLIENT_SECRET)
    delivery = await accepted(system, conn, PING, signed(PING))
    assert delivery["is_test"] is True
    assert delivery["event_type"] == "ping"


async def test_topic_event_connects(system: System) -> None:
    conn = await connection(system, "intercom", secret=CLIENT_SECRET)
    delivery = await accepted(system, conn, CONVERSATION, signed(CONVERSATION))
    assert delivery["is_test"] is False
    assert delivery["event_id"] == "intercom:notif_7b5e1f0c"


async def test_tampered_body_is_refused(system: System) -> None:
    conn = await connection(system, "intercom", secret=CLIENT_SECRET)
    await rejected(system, conn, CONVERSATION.replace(b"1911149811", b"1"), signed(CONVERSATION),
                   "signature_mismatch")


async def test_wrong_secret_is_refused(system: System) -> None:
    conn = await connection(system, "intercom", secret=CLIENT_SECRET)
    await rejected(system, conn, PING, signed(PING, "an-access-token-not-the-secret"), "signature_mismatch")


async def test_sha256_prefix_is_malformed(system: System) -> None:
    conn = await connection(system, "intercom", secret=CLIENT_SECRET)
    headers = {"X-Hub-Signature": "sha256=" + hmac_sha("someone-elses-secret", PING).hex()}
    await rejected(system, conn, PING, headers, "malformed_signature")


async def test_a_sha256_signature_with_this_secret_is_another_providers(system: System) -> None:
    """Bitbucket, Jira and Snyk put 'sha256=<hex>' in the same header: with this connection's secret, the
    request is theirs, and the diagnosis says so rather than 'malformed'."""
    conn = await connection(system, "intercom", secret=CLIENT_SECRET)
    headers = {"X-Hub-Signature": "sha256=" + hmac_sha(CLIENT_SECRET, PING).hex()}
    reply = await rejected(system, conn, PING, headers, "wrong_provider")
    assert "Bitbucket Cloud" in reply["error"]["message"] and "sign the same way" in reply["error"]["message"]
