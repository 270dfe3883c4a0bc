"""HubSpot v3 through the running receiver, signed by HubSpot's own SDK (``hubspot-api-client``)."""

from __future__ import annotations

import re

import orjson
from hubspot.utils.signature import Signature  # type: ignore[import-untyped]

from tests.providers.flow import accepted, connection, now_s, rejected
from tests.system import System

SECRET = "a3b1c2d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d"  # HubSpot client secrets are UUIDs
BODY = orjson.dumps(
    [{"eventId": 100, "subscriptionId": 12345, "portalId": 62515, "occurredAt": 1564113600000,
      "subscriptionType": "contact.creation", "attemptNumber": 0, "objectId": 123}]
)


def signed(url: str, body: bytes, secret: str = SECRET, skew_s: float = 0) -> dict[str, str]:
    timestamp = str(now_s(skew_s) * 1000)  # HubSpot sends milliseconds
    signature = Signature.get_signature(
        secret, body.decode(), "v3", http_uri=url, http_method="POST", timestamp=timestamp
    )
    return {
        "X-HubSpot-Signature-v3": signature,
        "X-HubSpot-Request-Timestamp": timestamp,
        "content-type": "application/json",
    }


async def test_sdk_signed_event_connects(system: System) -> None:
    conn = await connection(system, "hubspot", secret=SECRET)
    delivery = await accepted(system, conn, BODY, signed(conn["webhook_url"], BODY))
    assert delivery["event_type"] == "contact.creation"
    assert delivery["event_id"] == "hubspot:100"


async def test_tampered_body_is_refused(system: System) -> None:
    conn = await connection(system, "hubspot", secret=SECRET)
    headers = signed(conn["webhook_url"], BODY)
    await rejected(system, conn, BODY.replace(b"123", b"999"), headers, "signature_mismatch")


async def test_wrong_secret_is_refused(system: System) -> None:
    conn = await connection(system, "hubspot", secret=SECRET)
    headers = signed(conn["webhook_url"], BODY, secret="0f0f0f0f-1111-2222-3333-444444444444")
    await rejected(system, conn, BODY, headers, "signature_mismatch")


async def test_signature_for_another_url_is_refused(system: System) -> None:
    conn = await connection(system, "hubspot", secret=SECRET)
    headers = signed("https://elsewhere.example/hooks/x", BODY)
    await rejected(system, conn, BODY, headers, "signature_mismatch")


async def test_stale_millisecond_timestamp_is_refused(system: System) -> None:
    conn = await connection(system, "hubspot", secret=SECRET)
    headers = signed(conn["webhook_url"], BODY, skew_s=-600)
    reply = await rejected(system, conn, BODY, headers, "timestamp_too_old")
    skew = int(re.search(r"(\d+) s old", reply["error"]["message"]).group(1))  # type: ignore[union-attr]
    assert 598 <= skew <= 602  # the measured skew, give or take the request's own second


async def test_connection_waits_for_the_issued_secret_then_connects(system: System) -> None:
    conn = await connection(system, "hubspot")  # HubSpot issues the secret: none yet
    assert conn["secret"] == ""
    await rejected(system, conn, BODY, signed(conn["webhook_url"], BODY), "secret_not_set")
    status, view = await system.api(
        "POST", f"/v1/connections/{conn['id']}/reconnect", json={"secret": SECRET}
    )
    assert status == 200, view
    await accepted(system, conn, BODY, signed(conn["webhook_url"], BODY))


async def test_absurd_timestamp_is_a_malformed_header_not_a_500(system: System) -> None:
    conn = await connection(system, "hubspot", secret=SECRET)
    headers = {**signed(conn["webhook_url"], BODY), "X-HubSpot-Request-Timestamp": "9" * 400}
    await rejected(system, conn, BODY, headers, "malformed_timestamp")


async def test_query_string_is_signed_with_hubspots_decoded_characters(system: System) -> None:
    # HubSpot's v3 docs: characters such as %3A and %2F are decoded in the URI it signs.
    conn = await connection(system, "hubspot", secret=SECRET)
    headers = signed(conn["webhook_url"] + "?source=crm:contacts/new", BODY)
    status, reply = await system.post_hook(conn["webhook_url"] + "?source=crm%3Acontacts%2Fnew", BODY, headers)
    assert status == 202, reply
