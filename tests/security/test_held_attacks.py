"""Held deliveries, attacked: someone holding a connection's webhook URL floods it with forgeries that
are held, and someone holding a (leaked) browser token asks for re-verification in a loop. Both are
bounded: what Redis keeps stays within ``HELD_MAX_TOTAL_BYTES`` (the bytes stored, not the request
before it was sealed), and ``REVERIFIES_PER_MINUTE`` per connection (429 ``too_many_reverifies``)."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.receiver.config import Settings as ReceiverSettings
from services.status_api.config import Settings as StatusSettings
from shared.errors import ConfigError
from shared.store import DEDUPE_TTL_S
from tests.signing import standard_webhooks_headers
from tests.system import System, SystemWith
from tests.test_held import SMALL_HELD_BOUNDS


def forged_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


async def forge(system: System, conn: dict[str, Any], padding: str = "") -> int:
    body = orjson.dumps({"type": "invoice.paid", "note": padding})
    headers = standard_webhooks_headers(forged_secret(), body, f"msg_{uuid.uuid4().hex}")
    status, _ = await system.post_hook(conn["webhook_url"], body, headers)
    return status


@pytest.fixture
async def bounded(system_with: SystemWith) -> AsyncIterator[System]:
    async with system_with(receiver=SMALL_HELD_BOUNDS) as running:
        yield running


async def test_what_redis_holds_stays_within_the_total_bound(
    bounded: System, redis_client: aioredis.Redis, prefix: str
) -> None:
    """Sealing adds base64 twice and the GCM tag: counting the request before it was sealed let Redis
    hold nearly twice ``HELD_MAX_TOTAL_BYTES``. The bound counts what is stored."""
    system = bounded
    conns = [await system.create() for _ in range(4)]
    for conn in conns:
        for _ in range(6):
            assert await forge(system, conn, "x" * 600) == 401
    stored = 0
    per_connection = []
    for conn in conns:
        values = [*await redis_client.hvals(f"{prefix}:{{{conn['id']}}}:held:data"),
                  *await redis_client.hvals(f"{prefix}:{{{conn['id']}}}:held:meta")]
        per_connection.append(sum(len(v) for v in values))
        stored += per_connection[-1]
    assert stored > 0
    assert stored <= 5120, f"{stored} bytes held in Redis over a bound of 5120"
    assert max(per_connection) <= 4096
    counted = int(await redis_client.get(f"{prefix}:held:bytes") or 0)
    assert stored <= counted <= 5120


async def test_reverify_in_a_loop_is_limited_per_connection(system: System) -> None:
    """Each re-verification opens and checks every held request (up to 2 MiB per connection): a leaked
    browser token calling it in a loop must not turn into unbounded CPU."""
    conn, other = await system.create(), await system.create()
    assert await forge(system, conn) == 401
    token = await system.browser_token("acct-test")
    auth = {"Authorization": f"Bearer {token}"}
    path = f"/v1/connections/{conn['id']}/reverify"
    answers = [await system.api("POST", path, headers=auth) for _ in range(15)]
    statuses = [status for status, _ in answers]
    assert statuses[0] == 200 and answers[0][1]["checked"] == 1
    assert 429 in statuses, statuses
    first = statuses.index(429)
    assert set(statuses[first:]) == {429}
    refused = answers[first][1]["error"]
    assert refused["code"] == "too_many_reverifies" and "minute" in refused["message"]
    # Refused: nothing changed; the held request is still there, another connection is not limited, and
    # the product's service token is not held back by a (leaked) browser token's spending.
    status, data = await system.api("GET", f"/v1/connections/{conn['id']}/held", headers=auth)
    assert status == 200 and len(data["held"]) == 1
    status, data = await system.api("POST", f"/v1/connections/{other['id']}/reverify", headers=auth)
    assert status == 200
    status, data = await system.api("POST", path)
    assert status == 200 and data["checked"] == 1


async def test_a_spent_budget_never_holds_back_the_products_fix(system: System) -> None:
    conn = await system.create()
    provider_secret = forged_secret()  # what the provider signs with; the connection has another one
    body = orjson.dumps({"type": "invoice.paid"})
    status, _ = await system.post_hook(conn["webhook_url"], body,
                                       standard_webhooks_headers(provider_secret, body, "msg_held"))
    assert status == 401
    auth = {"Authorization": f"Bearer {await system.browser_token('acct-test')}"}
    path = f"/v1/connections/{conn['id']}/reverify"
    while (await system.api("POST", path, headers=auth))[0] != 429:
        pass
    status, _ = await system.api("POST", f"/v1/connections/{conn['id']}/reconnect", json={"secret": provider_secret})
    assert status == 200
    view = await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
    assert view["events_received"] == 1


async def test_the_429_says_when_to_retry(system: System) -> None:
    conn = await system.create()
    path = f"/v1/connections/{conn['id']}/reverify"
    auth = {"Authorization": f"Bearer {await system.browser_token('acct-test')}"}
    for _ in range(30):
        async with system.session.post(system.api_url + path, headers=auth) as resp:
            if resp.status == 429:
                assert 1 <= int(resp.headers["Retry-After"]) <= 60
                return
            assert resp.status == 200
    pytest.fail("30 re-verifications in a row were never limited")


async def _raw_post(system: System, path: str, headers: bytes, body: bytes) -> int:
    """A request as bytes: a header value that is not UTF-8 (no HTTP client library sends one)."""
    host, port = system.receiver_url.split("//")[1].split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n".encode() + headers
                 + b"Connection: close\r\n\r\n" + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return int(answer.split(b" ", 2)[1])


async def test_a_header_that_is_not_utf8_is_held_not_a_500(system: System) -> None:
    """The receiver holds the headers of a rejected request; one with bytes that are not UTF-8 (legal
    in HTTP, obs-text) made the hold fail after the rejection was recorded: 500, and a retry recorded
    it again. Now it is held (the odd bytes replaced), and verifies later when the body's signature does."""
    conn = await system.create()
    provider_secret = forged_secret()  # the provider's secret; the connection has another one
    body = orjson.dumps({"type": "invoice.paid"})
    signed = standard_webhooks_headers(provider_secret, body, "msg_odd_header")
    head = b"".join(f"{k}: {v}\r\n".encode() for k, v in signed.items())
    head += b"X-Agent-Note: caf\xe9 \xff\xfe\r\n"
    assert await _raw_post(system, f"/hooks/{conn['id']}", head, body) == 401
    status, data = await system.api("GET", f"/v1/connections/{conn['id']}/held")
    assert status == 200 and len(data["held"]) == 1
    status, _ = await system.api("POST", f"/v1/connections/{conn['id']}/reconnect", json={"secret": provider_secret})
    assert status == 200
    view = await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
    assert view["events_received"] == 1


@pytest.mark.parametrize("settings", [ReceiverSettings, StatusSettings])
def test_nothing_is_held_longer_than_events_are_deduplicated(settings: Any) -> None:
    """A held request is verified again (and its recovered delivery published, with a fixed delivery id)
    within HELD_MAX_AGE_S of its arrival; if that were longer than the 72 h the verifier remembers a
    delivery or event id, a recovered event could be applied twice. The setting refuses it."""
    assert settings.from_env(held_max_age_s=DEDUPE_TTL_S).held_max_age_s == DEDUPE_TTL_S
    with pytest.raises(ConfigError, match="HELD_MAX_AGE_S"):
        settings.from_env(held_max_age_s=DEDUPE_TTL_S + 1)


@pytest.fixture
async def short_rotation(system_with: SystemWith) -> AsyncIterator[System]:
    async with system_with(status_api={"rotation_window_s": 1}) as running:
        yield running


async def test_a_request_signed_with_a_retired_secret_never_turns_green_later(short_rotation: System) -> None:
    """Someone who kept a rotated-out secret signs with it after its window ended: rejected and held. No
    re-verification, and no later rotation, makes it count: a held request is judged with the secrets as
    they are now, and a retired one is never among them again."""
    system = short_rotation
    old, new, newer = forged_secret(), forged_secret(), forged_secret()
    conn = await system.create(secret=old)
    status, _ = await system.api("POST", f"/v1/connections/{conn['id']}/reconnect", json={"secret": new})
    assert status == 200
    await asyncio.sleep(1.2)  # the old secret's window has ended
    body = orjson.dumps({"type": "invoice.paid"})
    status, _ = await system.post_hook(conn["webhook_url"], body, standard_webhooks_headers(old, body, "msg_old"))
    assert status == 401
    status, data = await system.api("GET", f"/v1/connections/{conn['id']}/held")
    assert status == 200 and len(data["held"]) == 1
    status, data = await system.api("POST", f"/v1/connections/{conn['id']}/reverify")
    assert status == 200 and data == {"checked": 1, "recovered": 0, "still_rejected": 1}
    status, _ = await system.api("POST", f"/v1/connections/{conn['id']}/reconnect", json={"secret": newer})
    assert status == 200  # 'new' is the previous secret now; 'old' is not
    status, data = await system.api("POST", f"/v1/connections/{conn['id']}/reverify")
    assert status == 200 and data == {"checked": 1, "recovered": 0, "still_rejected": 1}
    view = await system.get(conn["id"])
    assert view["state"] == "pending" and view["events_received"] == 0


@pytest.fixture
async def roomy(system_with: SystemWith) -> AsyncIterator[System]:
    """A rejected-delivery budget that never runs out here, so every forgery goes the whole way: recorded,
    diagnosed, held (the fuzz test of the receiver soon meets the 429 and then never holds anything)."""
    async with system_with(receiver={"rejected_burst": 100_000}) as running:
        yield running


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(values=st.lists(st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b and b"\0" not in b),
                       min_size=1, max_size=4),
       body=st.text(max_size=300).map(str.encode))
async def test_forgeries_with_arbitrary_header_bytes_are_held_or_refused_never_a_500(
    roomy: System, values: list[bytes], body: bytes
) -> None:
    system = roomy
    if not hasattr(roomy, "fuzz_conn"):
        roomy.fuzz_conn = await system.create()  # type: ignore[attr-defined]
    conn = roomy.fuzz_conn  # type: ignore[attr-defined]
    signed = standard_webhooks_headers(forged_secret(), body, f"msg_{uuid.uuid4().hex}")
    head = b"".join(f"{k}: {v}\r\n".encode() for k, v in signed.items() if k.lower() != "content-type")
    head += b"".join(b"X-Fuzz-%d: " % i + value + b"\r\n" for i, value in enumerate(values))
    status = await _raw_post(system, f"/hooks/{conn['id']}", head, body)
    assert status in (400, 401), status
