"""The notification endpoints registry of the status API: service token only, input checked with
reason codes, the secret shown once, and addresses the notifier must not reach refused."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from standardwebhooks import Webhook

from tests.notifier.conftest import ProductReceiver, register
from tests.notifier.test_notifications import wait_attempts
from tests.system import System, start_system

ROUTE = "/v1/notification-endpoints"


@pytest.fixture
async def strict(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None,
    notifier_cleanup: None,
) -> AsyncIterator[System]:
    """The system with the default settings: loopback and private addresses refused."""
    async with start_system(amqp_url, redis_url, prefix) as system:
        yield system


async def test_create_read_list_delete(system: System) -> None:
    created = await register(system, "https://product.example/hooks/status", account_id="acct-1",
                             events=["connection.failed", "connection.connected"])
    secret = created["secret"]
    assert secret.startswith("whsec_")
    Webhook(secret)  # a valid Standard Webhooks secret (base64 of random bytes after the prefix)
    assert created["events"] == ["connection.connected", "connection.failed"]
    assert created["status"] == "enabled" and created["created_at"].endswith("Z")

    status, one = await system.api("GET", f"{ROUTE}/{created['id']}")
    assert status == 200 and "secret" not in one and one["url"] == created["url"]
    status, listed = await system.api("GET", ROUTE)
    assert status == 200 and [e["id"] for e in listed["endpoints"]] == [created["id"]]
    assert secret not in str(listed) and secret not in str(one)
    status, other = await system.api("GET", f"{ROUTE}?account_id=acct-2")
    assert status == 200 and other["endpoints"] == []
    status, log = await system.api("GET", f"{ROUTE}/{created['id']}/attempts")
    assert status == 200 and log == {"attempts": []}

    async with system.session.delete(f"{system.api_url}{ROUTE}/{created['id']}", headers=system.auth) as resp:
        assert resp.status == 204
    status, gone = await system.api("GET", f"{ROUTE}/{created['id']}")
    assert status == 404 and gone["error"]["code"] == "endpoint_not_found"


async def test_a_browser_token_gets_403_with_a_reason(system: System) -> None:
    token = await system.browser_token("acct-test")
    for method, path in (("GET", ROUTE), ("POST", ROUTE), ("GET", f"{ROUTE}/{uuid.uuid4().hex}")):
        status, data = await system.api(method, path, headers={"Authorization": f"Bearer {token}"},
                                        json={"url": "https://product.example/h"})
        assert status == 403, (method, path, data)
        assert data["error"]["code"] == "service_token_required"


@pytest.mark.parametrize(("body", "code"), [
    ({}, "missing_field"),
    ({"url": "ftp://product.example/h"}, "invalid_url_scheme"),
    ({"url": "/relative"}, "invalid_url_scheme"),
    ({"url": "https://user:pw@product.example/h"}, "invalid_url"),
    ({"url": "https://product.example/" + "a" * 2100}, "invalid_field"),
    ({"url": "https://product.example/h", "events": ["connection.exploded"]}, "unknown_event_type"),
    ({"url": "https://product.example/h", "events": []}, "invalid_field"),
    ({"url": "https://product.example/h", "account_id": "no spaces"}, "invalid_account_id"),
    ({"url": "https://product.example/h", "secret": "mine"}, "unknown_field"),
    ({"url": "http://127.0.0.1:9/h"}, "loopback_address"),
    ({"url": "http://localhost:9/h"}, "loopback_address"),
    ({"url": "http://[::1]/h"}, "loopback_address"),
    ({"url": "http://10.1.2.3/h"}, "private_address"),
    ({"url": "http://169.254.169.254/latest/meta-data"}, "private_address"),
    ({"url": "http://[::ffff:192.168.0.1]/h"}, "private_address"),
])
async def test_bad_input_is_400_with_a_reason_code(strict: System, body: dict[str, object], code: str) -> None:
    status, data = await strict.api("POST", ROUTE, json=body)
    assert status == 400, data
    assert data["error"]["code"] == code


async def test_unknown_ids_are_404(system: System) -> None:
    for path in (f"{ROUTE}/{uuid.uuid4().hex}", f"{ROUTE}/not-an-id/attempts"):
        status, data = await system.api("GET", path)
        assert status == 404 and data["error"]["code"] == "endpoint_not_found"


async def test_the_notifier_refuses_a_name_that_resolves_to_loopback(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None,
    notifier_cleanup: None, product: ProductReceiver,
) -> None:
    """Registered where the status API allows loopback, but the notifier does not: never sent."""
    async with start_system(amqp_url, redis_url, prefix, status_api={"notifier_allow_loopback": True}) as system:
        system.start_notifier(notifier_retry_delays_s="0.3,0.6")
        endpoint = await register(system, product.url("h", host="localhost"))
        conn = await system.create()
        status, test = await system.api("POST", f"/v1/connections/{conn['id']}/tests", json={"timeout_s": 1})
        assert status == 201, test
        log = await wait_attempts(system, endpoint["id"], 3)  # every attempt refused, then given up
        assert {(a["outcome"], a["error"], a["status"]) for a in log} == {("failed", "loopback_address", None)}
        assert product.received == []
