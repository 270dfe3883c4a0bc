"""Attacks on the running system: other tenants' connections, floods of forged deliveries, replays,
service-token rotation, and secrets leaking into responses, logs, metrics or deliveries."""

from __future__ import annotations

import ast
import asyncio
import base64
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from services.receiver import app as receiver_app
from services.receiver.config import Settings as ReceiverSettings
from services.receiver.limits import RejectLimit, RejectLimiter
from services.status_api.app import create_app as create_status_api
from services.status_api.config import Settings as StatusSettings
from shared.errors import ConfigError
from shared.keys import Keys
from shared.models import now_ms
from shared.store import Store
from tests.faults.harness import TOKEN as HARNESS_TOKEN
from tests.faults.harness import Services, service_env
from tests.faults.ledger import write_report
from tests.signing import generic_sha256_headers, standard_webhooks_headers
from tests.system import System, free_port

ROOT = Path(__file__).resolve().parents[1]
EVENT = orjson.dumps({"type": "invoice.paid", "data": {"amount": 1200}})


def msg_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


# --- tenant isolation -----------------------------------------------------------------------------


async def test_browser_token_never_reaches_another_accounts_connections(system: System) -> None:
    mine = await system.create(account_id="acct-alice")
    theirs = await system.create(account_id="acct-bob")
    status, opened = await system.api("POST", f"/v1/connections/{theirs['id']}/tests", json={})
    assert status == 201, opened
    before = await system.get(theirs["id"])
    alice = {"Authorization": f"Bearer {await system.browser_token('acct-alice')}"}

    async def call(method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with system.session.request(method, system.api_url + path, headers=alice, **kw) as resp:
            return resp.status, await resp.json(content_type=None)

    cid = theirs["id"]
    attempts = {
        "read": ("GET", f"/v1/connections/{cid}", {}),
        "deliveries": ("GET", f"/v1/connections/{cid}/deliveries", {}),
        "stream": ("GET", f"/v1/connections/{cid}/stream", {}),
        "account stream": ("GET", "/v1/accounts/acct-bob/stream", {}),
        "test": ("POST", f"/v1/connections/{cid}/tests", {"json": {}}),
        "test result": ("GET", f"/v1/connections/{cid}/tests/{opened['id']}", {}),
        "reconnect": ("POST", f"/v1/connections/{cid}/reconnect", {"json": {}}),
        "disconnect": ("DELETE", f"/v1/connections/{cid}", {}),
        "mint a token": ("POST", "/v1/accounts/acct-bob/tokens", {"json": {}}),
    }
    for what, (method, path, kw) in attempts.items():
        status, body = await call(method, path, **kw)
        assert status == 404, (what, status, body)
        assert theirs["id"] not in orjson.dumps(body).decode() or what == "disconnect", (what, body)
    status, listed = await call("GET", "/v1/connections?account_id=acct-bob")
    assert status == 200 and listed["connections"] == []
    status, listed = await call("GET", "/v1/connections")
    assert [c["id"] for c in listed["connections"]] == [mine["id"]]
    # Nothing about bob's connection changed, and alice still reads her own.
    after = await system.get(theirs["id"])
    assert (after["version"], after["state"]) == (before["version"], before["state"])
    assert (await call("GET", f"/v1/connections/{mine['id']}"))[0] == 200


async def test_an_accounts_live_stream_never_carries_another_accounts_changes(system: System) -> None:
    mine = await system.create("generic-hmac-sha256", account_id="acct-alice")
    theirs = await system.create("generic-hmac-sha256", account_id="acct-bob")
    headers = {"Authorization": f"Bearer {await system.browser_token('acct-alice')}",
               "Accept": "text/event-stream"}
    async with system.session.get(f"{system.api_url}/v1/accounts/acct-alice/stream", headers=headers) as stream:
        assert stream.status == 200
        seen = await _read_stream(stream, lambda text: "event: ready" in text)
        for conn in (theirs, mine):  # bob's connection changes first, then alice's
            body = orjson.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "x"})
            status, _ = await system.post_hook(conn["webhook_url"], body,
                                               generic_sha256_headers(conn["secret"], body))
            assert status == 202
        await system.wait_for(theirs["id"], lambda v: v["state"] == "connected")
        # Read until alice's own change (sent after bob's) has arrived as an event of its own.
        later = await _read_stream(stream, lambda text: mine["id"] in text and '"connected"' in text)
    assert mine["id"] in seen
    assert theirs["id"] not in seen + later, "bob's connection appeared in alice's stream"


async def _read_stream(resp: aiohttp.ClientResponse, done: Callable[[str], bool]) -> str:
    seen = ""
    while not done(seen):
        chunk = await asyncio.wait_for(resp.content.readany(), 10)
        assert chunk, f"the stream ended first: {seen[-500:]!r}"
        seen += chunk.decode()
    return seen


async def test_a_forged_or_retargeted_browser_token_is_refused(system: System) -> None:
    theirs = await system.create(account_id="acct-bob")
    token = await system.browser_token("acct-alice")
    prefix, payload, signature = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "acct-bob"
    forged_payload = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    for forged in (f"{prefix}.{forged_payload}.{signature}", token[:-2], token + "x", f"{prefix}..{signature}"):
        headers = {"Authorization": f"Bearer {forged}"}
        async with system.session.get(f"{system.api_url}/v1/connections/{theirs['id']}", headers=headers) as r:
            body = await r.json()
            assert r.status == 401, (forged, body)
            assert body["error"]["code"] == "invalid_token"


# --- floods and replays ---------------------------------------------------------------------------


async def test_a_flood_of_bad_signatures_is_limited_and_never_crowds_out_real_events(
    system: System, redis_client: aioredis.Redis
) -> None:
    conn = await system.create("generic-hmac-sha256")
    forged = generic_sha256_headers("not-the-secret-at-all!", EVENT)
    flood = 200
    started = time.monotonic()
    answers = [await system.post_hook(conn["webhook_url"], EVENT, forged) for _ in range(flood)]
    elapsed_s = time.monotonic() - started
    statuses = [status for status, _ in answers]
    limited = [body for status, body in answers if status == 429]
    rejected = statuses.count(401)
    assert set(statuses) == {401, 429}
    # The burst (30), plus one a second for as long as the flood lasted: never more.
    assert 30 <= rejected <= 30 + math.ceil(elapsed_s) + 1, (rejected, elapsed_s)
    assert all(b["error"]["code"] == "too_many_rejected" for b in limited)
    # The real provider is never limited, even while the bucket is empty.
    real = []
    for i in range(40):
        body = orjson.dumps({"id": f"evt_{i}", "type": "order.created"})
        real.append((await system.post_hook(conn["webhook_url"], body,
                                            generic_sha256_headers(conn["secret"], body)))[0])
    assert real == [202] * 40
    view = await system.wait_for(conn["id"], lambda v: v["events_received"] == 40)
    # Only what was answered 401 was published and stored; the 429s left no trace.
    raw = await redis_client.hgetall(Keys(system.common["redis_prefix"]).conn(conn["id"]))
    assert int(raw["rejected_total"]) == rejected
    assert view["state"] == "connected"
    write_report("reject_flood", {"sent": flood, "rejected_401_published": rejected, "limited_429": len(limited),
                                  "stored_rejections": int(raw["rejected_total"]), "verified_sent": 40,
                                  "verified_accepted": real.count(202),
                                  "command": ".venv/bin/python -m pytest tests/test_security.py -q -k flood"})


async def test_the_reject_bucket_on_redis(redis_client: aioredis.Redis, prefix: str) -> None:
    """The token bucket itself, on the real Redis, with the clock passed in (no sleeping)."""
    limiter = RejectLimiter(Store(redis_client, prefix), RejectLimit(burst=3, per_s=2.0))
    cid, t0 = uuid.uuid4().hex, 1_800_000_000_000
    assert [await limiter.retry_after_s(cid, t0) for _ in range(3)] == [None, None, None]
    assert await limiter.retry_after_s(cid, t0) == 1  # empty: the next token in 500 ms, said as 1 s
    assert await limiter.retry_after_s(cid, t0 + 500) is None  # one token came back
    assert await limiter.retry_after_s(cid, t0 + 500) == 1
    assert [await limiter.retry_after_s(cid, t0 + 60_000) for _ in range(4)] == [None, None, None, 1]  # capped
    assert await limiter.retry_after_s(uuid.uuid4().hex, t0) is None  # buckets are per connection
    ttl_ms = await redis_client.pttl(Keys(prefix).reject_bucket(cid))
    assert 0 < ttl_ms <= RejectLimit(3, 2.0).ttl_ms  # an idle bucket goes away by itself
    with pytest.raises(ConfigError):
        RejectLimit(burst=0, per_s=1.0)


async def test_a_429_carries_retry_after_and_the_bucket_refills(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The receiver's clock is the test's (the bucket takes its time from the caller): the burst is
    # counted exactly, and the refill is measured against the Retry-After the server answered, not
    # against how long a loaded machine takes to send the requests or to wake from a sleep.
    clock = ManualClock(now_ms())
    monkeypatch.setattr(receiver_app, "now_ms", clock)
    burst = ReceiverSettings.from_env().rejected_burst
    conn = await system.create("generic-hmac-sha256")
    forged = generic_sha256_headers("not-the-secret-at-all!", EVENT)
    async with aiohttp.ClientSession() as session:

        async def post() -> aiohttp.ClientResponse:
            async with session.post(conn["webhook_url"], data=EVENT, headers=forged) as resp:
                return resp

        statuses = [(await post()).status for _ in range(burst)]
        assert statuses == [401] * burst  # the whole burst is answered (and recorded)
        last = await post()
        assert last.status == 429
        wait_s = int(last.headers["Retry-After"])
        assert 1 <= wait_s <= 2
        clock.advance_ms(wait_s * 1000 - 1)
        assert (await post()).status == 429  # not a moment before Retry-After
        clock.advance_ms(1)
        assert (await post()).status == 401  # refilled: the next bad request is looked at again


class ManualClock:
    """``now_ms`` that moves only when told."""

    def __init__(self, start_ms: int) -> None:
        self.ms = start_ms

    def __call__(self) -> int:
        return self.ms

    def advance_ms(self, ms: int) -> None:
        self.ms += ms


async def test_a_replayed_delivery_is_accepted_but_counted_once(system: System) -> None:
    conn = await system.create()
    headers = standard_webhooks_headers(conn["secret"], EVENT, msg_id())
    answers = [await system.post_hook(conn["webhook_url"], EVENT, headers) for _ in range(5)]
    # Same id, same signature, same bytes: a provider's retry or an attacker's replay. Each is answered
    # 202 (a provider must stop retrying) but only the first changes anything.
    assert [s for s, _ in answers] == [202] * 5
    await system.wait_for(conn["id"], lambda v: v["events_received"] >= 1)
    await asyncio.sleep(0.5)
    assert (await system.get(conn["id"]))["events_received"] == 1
    _, data = await system.api("GET", f"/v1/connections/{conn['id']}/deliveries")
    assert [d["outcome"] for d in data["deliveries"]] == ["verified"]


# --- service tokens -------------------------------------------------------------------------------


@pytest.fixture
async def rotating_api(
    monkeypatch: pytest.MonkeyPatch, amqp_url: str, redis_url: str, prefix: str,
    redis_client: aioredis.Redis, amqp_cleanup: None,
) -> AsyncIterator[str]:
    """A status API whose STATUS_API_TOKEN holds two tokens, as during a rotation."""
    monkeypatch.setenv("STATUS_API_TOKEN", " token-old-0123456789 , token-new-9876543210 ")
    settings = StatusSettings.from_env(amqp_url=amqp_url, redis_url=redis_url, redis_prefix=prefix,
                                       amqp_prefix=prefix, analytics_exchange=f"{prefix}.analytics")
    assert settings.status_api_token == ("token-old-0123456789", "token-new-9876543210")
    runner = web.AppRunner(create_status_api(settings))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_service_tokens_rotate_and_near_misses_are_refused(rotating_api: str) -> None:
    tries = {
        "token-old-0123456789": 200,
        "token-new-9876543210": 200,
        "token-old-012345678": 401,  # a prefix
        "token-old-01234567890": 401,  # one character more
        "TOKEN-OLD-0123456789": 401,
        "token-old-0123456789,token-new-9876543210": 401,  # the raw setting is not a token
        "dev-service-token-change-me": 401,  # the development default is off once a token is set
    }
    async with aiohttp.ClientSession() as session:
        for token, expected in tries.items():
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(f"{rotating_api}/v1/providers", headers=headers) as resp:
                assert resp.status == expected, token
        async with session.get(f"{rotating_api}/v1/providers") as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "missing_token"


# --- constant-time comparisons (a review, kept honest by a test) ---------------------------------

SECRETISH = re.compile(r"(digest|signature|sig|mac|expected|token|secret|given|computed)s?$", re.I)
# Reviewed and fine: both sides come from our own stored secret, nothing an attacker sends.
NOT_ATTACKER_CONTROLLED = {"shared/providers/diagnosis.py: trimmed != secret"}
REVIEWED = [ROOT / "services" / "status_api" / "auth.py", ROOT / "services" / "status_api" / "tokens.py",
            *sorted((ROOT / "shared" / "providers").glob("*.py"))]


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):
        return _name(node.func)
    return ""


def test_secrets_and_signatures_are_never_compared_with_eq() -> None:
    """``==`` on a secret-derived value leaks its length of matching prefix through timing; every
    such comparison in the signature parsers and token checks must go through hmac.compare_digest."""
    found = []
    for path in REVIEWED:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            if not any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                continue
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Constant) for o in operands):
                continue  # comparing with a literal (a scheme name, a version) reveals nothing secret
            names = [_name(o) for o in operands]
            where = f"{path.relative_to(ROOT)}: {ast.unparse(node)}"
            if any(SECRETISH.search(n) for n in names if n != "len") and where not in NOT_ATTACKER_CONTROLLED:
                found.append(f"{where} (line {node.lineno})")
    assert not found, "compare these with hmac.compare_digest:\n" + "\n".join(found)


# --- secrets never leak ---------------------------------------------------------------------------


async def test_secrets_never_appear_in_responses_logs_metrics_or_deliveries(
    amqp_url: str, redis_url: str, prefix: str, tmp_path: Path, redis_client: aioredis.Redis,
    amqp_cleanup: None,
) -> None:
    receiver_port = free_port()
    env = service_env(prefix, amqp_url, redis_url, PUBLIC_BASE_URL=f"http://127.0.0.1:{receiver_port}",
                      LOG_LEVEL="DEBUG")
    services = Services(env, tmp_path)
    try:
        receiver = services.make("receiver")
        receiver.port = receiver_port
        await receiver.start()
        verifier = await services.start("verifier")
        api = await services.start("status_api")
        seen = await _exercise(api.url, receiver.admin_url, verifier.url)
    finally:
        services.stop_all()
    secrets, texts = seen
    texts["logs"] = services.all_logs()
    assert texts["logs"].count("\n") > 5, "the services logged nothing: the check would prove nothing"
    assert all("hookstatus_" in texts[f"metrics {n}"] for n in ("api", "receiver", "verifier"))
    leaks = [(where, s[:10]) for where, text in texts.items() for s in secrets if _leaks(s, text)]
    write_report("secret_leaks", {"secrets": len(secrets), "places_searched": sorted(texts),
                                  "bytes_searched": sum(len(t) for t in texts.values()), "leaks": len(leaks),
                                  "command": ".venv/bin/python -m pytest tests/test_security.py -q -k secrets"})
    assert not leaks, f"secrets found in: {leaks}"


def _leaks(secret: str, text: str) -> bool:
    """The secret, or its key material without the provider's prefix (``whsec_``), anywhere in text."""
    material = secret.split("_", 1)[1] if secret.startswith("whsec_") else secret
    return secret in text or material in text


async def _exercise(api: str, receiver: str, verifier: str) -> tuple[list[str], dict[str, str]]:
    """Create, use, rotate and read connections the way the product would; return every secret and
    everything a client or an operator could have seen."""
    auth = {"Authorization": f"Bearer {HARNESS_TOKEN}"}
    texts: dict[str, str] = {}
    secrets: list[str] = []
    async with aiohttp.ClientSession(headers=auth) as s:
        async def call(method: str, url: str, **kw: Any) -> Any:
            async with s.request(method, url, **kw) as resp:
                text = await resp.text()
                key = f"{method} {url.split('/', 3)[-1]}"
                texts[key] = texts.get(key, "") + text
                return orjson.loads(text) if text.startswith("{") else text

        std = await call("POST", f"{api}/v1/connections",
                         json={"account_id": "acct-s", "provider": "standard-webhooks"})
        gen = await call("POST", f"{api}/v1/connections", json={
            "account_id": "acct-s", "provider": "generic-hmac-sha256", "secret": "my-own-pasted-secret-0042"})
        secrets += [std.pop("secret"), gen.pop("secret")]
        texts.pop("POST v1/connections")  # the creation answer is the one place a secret may be
        rotated = "whsec_" + base64.b64encode(uuid.uuid4().bytes * 2).decode()
        secrets.append(rotated)
        await call("POST", f"{api}/v1/connections/{std['id']}/reconnect", json={"secret": rotated})
        for secret in secrets[:1] + secrets[2:]:  # before and after the rotation
            headers = standard_webhooks_headers(secret, EVENT, msg_id())
            await call("POST", std["webhook_url"], data=EVENT, headers=headers)
        await call("POST", std["webhook_url"], data=EVENT, headers=standard_webhooks_headers(
            "whsec_" + base64.b64encode(b"w" * 32).decode(), EVENT, msg_id()))  # a wrong secret
        await call("POST", gen["webhook_url"], data=EVENT, headers=generic_sha256_headers(secrets[1], EVENT))
        await asyncio.sleep(1)  # the verifier stores them
        for conn in (std, gen):
            await call("GET", f"{api}/v1/connections/{conn['id']}")
            await call("GET", f"{api}/v1/connections/{conn['id']}/deliveries")
            await call("POST", f"{api}/v1/connections/{conn['id']}/tests", json={})
        await call("GET", f"{api}/v1/connections?account_id=acct-s")
        for name, url in (("api", api), ("receiver", receiver), ("verifier", verifier)):
            await call("GET", f"{url}/metrics")
            await call("GET", f"{url}/readyz")
            texts[f"metrics {name}"] = texts.pop("GET metrics")
            texts[f"readyz {name}"] = texts.pop("GET readyz")
    return secrets, texts
