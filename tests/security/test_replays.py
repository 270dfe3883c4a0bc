"""Replays with a fresh unsigned id: a captured signed request sent again with a new event id in a
header the signature does not cover (X-GitHub-Delivery, Shopify's Webhook-Id, Linear-Delivery,
X-Event-Id, a generic-hmac id header, Twilio's idempotency token) is still accepted (it verifies) but
counted once: such an id is never trusted alone, the fingerprint of the signed content decides too.
Ids are bounded in length."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from prometheus_client import REGISTRY
from twilio.request_validator import RequestValidator

from tests.providers.flow import hmac_sha
from tests.system import System

SECRET = "replay-secret-0123456789abcdef"
BODY = orjson.dumps({"id_in_body": None, "type": "order.created", "total": 10, "n": 1})
GENERIC = {"header": "X-Acme-Signature", "algorithm": "sha256", "encoding": "hex", "id_header": "X-Acme-Delivery"}
SMS = {"MessageSid": "SM1", "AccountSid": "AC1", "From": "+15005550006", "To": "+15005550001", "Body": "hi"}
Signer = Callable[[dict[str, Any]], tuple[bytes, dict[str, str]]]


def github(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    return BODY, {"X-Hub-Signature-256": "sha256=" + hmac_sha(SECRET, BODY).hex(), "X-GitHub-Event": "push"}


def shopify(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    return BODY, {"X-Shopify-Hmac-Sha256": base64.b64encode(hmac_sha(SECRET, BODY)).decode(),
                  "X-Shopify-Topic": "orders/create"}


def linear(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps({"action": "create", "type": "Comment", "webhookTimestamp": int(time.time() * 1000)})
    return body, {"Linear-Signature": hmac_sha(SECRET, body).hex(), "Linear-Event": "Comment"}


def generic_hmac(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    return BODY, {"X-Acme-Signature": hmac_sha(SECRET, BODY).hex()}


def generic_hmac_sha256(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    return BODY, {"X-Signature-256": "sha256=" + hmac_sha(SECRET, BODY).hex()}


def twilio(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    signature = RequestValidator(SECRET).compute_signature(conn["webhook_url"], SMS)
    return urlencode(SMS).encode(), {"X-Twilio-Signature": signature,
                                     "content-type": "application/x-www-form-urlencoded"}


# provider: (create fields, signer, the unsigned id header)
CASES: dict[str, tuple[dict[str, Any], Signer, str]] = {
    "github": ({}, github, "X-GitHub-Delivery"),
    "shopify": ({}, shopify, "X-Shopify-Webhook-Id"),
    "shopify-new-names": ({}, shopify, "shopify-webhook-id"),
    "linear": ({}, linear, "Linear-Delivery"),
    "generic-hmac": ({"settings": GENERIC}, generic_hmac, "X-Acme-Delivery"),
    "generic-hmac-sha256": ({}, generic_hmac_sha256, "X-Event-Id"),
    "twilio": ({}, twilio, "I-Twilio-Idempotency-Token"),
}


async def stored(system: System, cid: str, count: int) -> list[dict[str, Any]]:
    for _ in range(400):
        status, data = await system.api("GET", f"/v1/connections/{cid}/deliveries")
        assert status == 200
        if len(data["deliveries"]) >= count:
            return data["deliveries"]  # type: ignore[no-any-return]
        await asyncio.sleep(0.025)
    raise AssertionError(f"{count} deliveries were not stored")


def duplicates() -> float:
    """Deliveries the verifier (in this process) handled as duplicates so far."""
    return REGISTRY.get_sample_value("hookstatus_deliveries_consumed_total", {"result": "duplicate"}) or 0.0


async def handled_as_duplicates(count: int, before: float) -> None:
    for _ in range(400):
        if duplicates() - before >= count:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"{duplicates() - before} duplicates handled, {count} expected")


async def make(system: System, case: str) -> tuple[dict[str, Any], Signer, str]:
    fields, signer, header = CASES[case]
    provider = "shopify" if case.startswith("shopify") else case
    conn = await system.create(provider, secret=SECRET, **fields)
    return conn, signer, header


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_replay_with_a_fresh_unsigned_id_counts_once(system: System, case: str) -> None:
    conn, signer, header = await make(system, case)
    body, headers = signer(conn)
    before = duplicates()
    for _ in range(3):  # the original, then two replays, each with a new id
        status, reply = await system.post_hook(conn["webhook_url"], body, {**headers, header: str(uuid.uuid4())})
        assert status == 202, reply
    await stored(system, conn["id"], 1)
    await handled_as_duplicates(2, before)
    view = await system.get(conn["id"])
    assert view["events_received"] == 1, view
    status, data = await system.api("GET", f"/v1/connections/{conn['id']}/deliveries")
    assert len(data["deliveries"]) == 1


@pytest.mark.parametrize("case", ["github", "generic-hmac-sha256"])
async def test_the_providers_own_retry_and_a_new_event_still_count_right(system: System, case: str) -> None:
    conn, signer, header = await make(system, case)
    body, headers = signer(conn)
    delivery = str(uuid.uuid4())
    for _ in range(2):  # the provider retrying with the same id: a duplicate
        assert (await system.post_hook(conn["webhook_url"], body, {**headers, header: delivery}))[0] == 202
    other = BODY.replace(b'"n":1', b'"n":2')  # another event: counted
    signature = "sha256=" + hmac_sha(SECRET, other).hex()
    other_headers = {"X-Hub-Signature-256": signature, "X-GitHub-Event": "push"} if case == "github" \
        else {"X-Signature-256": signature}
    assert (await system.post_hook(conn["webhook_url"], other, {**other_headers, header: str(uuid.uuid4())}))[0] == 202
    await system.wait_for(conn["id"], lambda v: v["events_received"] == 2)


async def test_event_ids_are_bounded_in_length(system: System) -> None:
    conn, signer, header = await make(system, "generic-hmac-sha256")
    body, headers = signer(conn)
    status, reply = await system.post_hook(conn["webhook_url"], body, {**headers, header: "x" * 4000})
    assert status == 202, reply
    [entry] = await stored(system, conn["id"], 1)
    assert entry["event_id"].startswith("sha256:") and len(entry["event_id"]) <= 200
