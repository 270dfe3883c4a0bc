"""X (Twitter) Account Activity through the running receiver: the CRC answered as X's docs specify
(``twitter_reference_crc`` reproduces their Python sample), then POSTs signed with
``x-twitter-webhooks-signature: sha256=<base64>``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import orjson

from tests.providers.flow import accepted, connection, hmac_sha, rejected
from tests.system import System

CONSUMER_SECRET = "Xq7bP2vN9mL4kJ8hG3fD6sA1zW5eR0tY2uI7oP4aS9dF3gH6jK"  # 50 characters, like X's
EVENT = orjson.dumps(
    {"for_user_id": "2244994945",
     "tweet_create_events": [{"id_str": "1592559245765861376", "text": "hello"}]}
)


def twitter_reference_crc(consumer_secret: str, crc_token: str) -> dict[str, str]:
    """X's documented CRC answer (their Python sample, written out)."""
    digest = hmac.new(consumer_secret.encode(), msg=crc_token.encode(), digestmod=hashlib.sha256).digest()
    return {"response_token": "sha256=" + base64.b64encode(digest).decode()}


def signed(body: bytes, secret: str = CONSUMER_SECRET) -> dict[str, str]:
    signature = "sha256=" + base64.b64encode(hmac_sha(secret, body)).decode()
    return {"x-twitter-webhooks-signature": signature, "content-type": "application/json"}


async def crc(system: System, conn: dict[str, object], token: str) -> tuple[int, bytes, str]:
    async with system.session.get(f"{conn['webhook_url']}", params={"crc_token": token, "nonce": "n1"}) as resp:
        return resp.status, await resp.read(), resp.headers.get("Content-Type", "")


async def test_crc_is_answered_and_recorded_as_reachable(system: System) -> None:
    conn = await connection(system, "twitter", secret=CONSUMER_SECRET)
    token = "NjQ0MDUwNzU0NDA3NzA3MzYw+/="  # CRC tokens carry base64 characters
    status, body, content_type = await crc(system, conn, token)
    assert status == 200
    assert content_type.startswith("application/json")
    assert json.loads(body) == twitter_reference_crc(CONSUMER_SECRET, token)
    # Anyone can send a crc_token: only our answer is keyed, so it proves reachability, not the secret.
    view = await system.wait_for(conn["id"], lambda v: v["reachable_at"] is not None)
    assert view["state"] == "pending"
    _, data = await system.api("GET", f"/v1/connections/{conn['id']}/deliveries")
    [delivery] = data["deliveries"]
    assert (delivery["outcome"], delivery["handshake"], delivery["is_test"]) == ("reachable", True, True)
    await accepted(system, conn, EVENT, signed(EVENT))


async def test_crc_without_the_consumer_secret_is_refused(system: System) -> None:
    conn = await connection(system, "twitter")  # X issues the secret: none pasted yet
    status, body, _ = await crc(system, conn, "abc")
    assert status == 401
    assert orjson.loads(body)["error"]["code"] == "secret_not_set"


async def test_signed_event_connects(system: System) -> None:
    conn = await connection(system, "twitter", secret=CONSUMER_SECRET)
    delivery = await accepted(system, conn, EVENT, signed(EVENT))
    assert delivery["event_type"] == "tweet_create_events"


async def test_tampered_body_is_refused(system: System) -> None:
    conn = await connection(system, "twitter", secret=CONSUMER_SECRET)
    await rejected(system, conn, EVENT.replace(b"hello", b"HELLO"), signed(EVENT), "signature_mismatch")


async def test_wrong_secret_is_refused(system: System) -> None:
    conn = await connection(system, "twitter", secret=CONSUMER_SECRET)
    await rejected(system, conn, EVENT, signed(EVENT, "an-access-token-secret-instead"), "signature_mismatch")
