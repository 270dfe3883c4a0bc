"""Handshakes, as a stranger who holds only a connection's webhook URL sees them.

A handshake anyone can trigger (an echo: Dropbox's challenge, Graph's validationToken, X's CRC,
Asana's X-Hook-Secret) is answered, so the provider's setup succeeds, and recorded as ``reachable``;
it never turns a connection ``connected`` and never passes a test. Handshakes that prove the signing
secret (Slack's and Zoom's, signed) or a setting a stranger cannot know (Meta's verify token) still
count. No handshake reply is ever a signature, under the event key, over bytes a stranger chose that
could be an event; handshakes are rate-limited per connection.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
import redis.asyncio as aioredis
from slack_sdk.signature import SignatureVerifier

from shared.providers import PROVIDERS
from shared.providers.catalog import load as load_catalog
from tests.providers.flow import hmac_sha
from tests.system import System, start_system

ROOT = Path(__file__).resolve().parents[2]
DROPBOX_SECRET = "k3xq9v2m7p4w1zt"
TWITTER_SECRET = "xvz1evFS4wEEPTGEFPHBog-consumer-secret"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ZOOM_SECRET = "cEmcnHb6RG2vXYJwCZtjZg"
GRAPH = {"client_state": "secretClientValue-7f3a9c"}
META = {"verify_token": "my-verify-token"}
EVENT_LIKE = orjson.dumps({"tweet_create_events": [{"id_str": "1", "text": "hello"}], "for_user_id": "2"})


async def request(
    system: System, conn: dict[str, Any], method: str, query: dict[str, str] | None = None,
    body: bytes = b"", headers: dict[str, str] | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    url = conn["webhook_url"] + (f"?{urlencode(query)}" if query else "")
    async with system.session.request(method, url, data=body, headers=headers or {}) as resp:
        return resp.status, await resp.read(), dict(resp.headers)


async def deliveries(system: System, cid: str) -> list[dict[str, Any]]:
    status, data = await system.api("GET", f"/v1/connections/{cid}/deliveries")
    assert status == 200, data
    return data["deliveries"]  # type: ignore[no-any-return]


async def recorded(system: System, cid: str, count: int = 1) -> list[dict[str, Any]]:
    """Wait until the verifier stored ``count`` deliveries of the connection; return them."""
    deadline = time.monotonic() + 10
    while True:
        found = await deliveries(system, cid)
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} deliveries stored, {count} expected"
        await asyncio.sleep(0.025)


def slack_signed(body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    return {"X-Slack-Signature": signature, "X-Slack-Request-Timestamp": timestamp,
            "content-type": "application/json"}


def zoom_signed(body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    digest = hmac_sha(ZOOM_SECRET, f"v0:{timestamp}:".encode() + body).hex()
    return {"x-zm-signature": f"v0={digest}", "x-zm-request-timestamp": timestamp,
            "content-type": "application/json"}


# Each echo handshake: how to create its connection, and the request a stranger sends.
ECHOES: dict[str, tuple[dict[str, Any], str, str, dict[str, str], dict[str, str]]] = {
    # name: (create fields, method, token parameter, extra query, headers)
    "dropbox": ({"secret": DROPBOX_SECRET}, "GET", "challenge", {}, {}),
    "msgraph": ({"settings": GRAPH}, "POST", "validationToken", {}, {"content-type": "text/plain"}),
    "twitter": ({"secret": TWITTER_SECRET}, "GET", "crc_token", {"nonce": "n1"}, {}),
}


async def echo(system: System, name: str, token: str) -> tuple[dict[str, Any], int, bytes, dict[str, str]]:
    fields, method, param, extra, headers = ECHOES[name]
    conn = await system.create(name, **fields)
    status, body, reply_headers = await request(system, conn, method, {param: token, **extra}, headers=headers)
    return conn, status, body, reply_headers


@pytest.mark.parametrize("name", sorted(ECHOES))
async def test_an_echo_is_answered_and_recorded_as_reachable_but_never_connects(system: System, name: str) -> None:
    conn, status, body, _ = await echo(system, name, "KCVkmwbMo9ysnt4DVvTOGtZPD6vYYw")
    assert status == 200, body
    [entry] = await recorded(system, conn["id"])
    assert (entry["outcome"], entry["handshake"]) == ("reachable", True)
    view = await system.get(conn["id"])
    assert view["state"] == "pending" and view["display"] == "pending"
    assert view["events_received"] == 0
    assert view["reachable_at"] is not None and view["reachable_at"] == entry["at"]


@pytest.mark.parametrize("name", sorted(ECHOES))
async def test_an_echo_never_passes_a_test(system: System, name: str) -> None:
    fields, method, param, extra, headers = ECHOES[name]
    conn = await system.create(name, **fields)
    status, opened = await system.api("POST", f"/v1/connections/{conn['id']}/tests", json={"timeout_s": 60})
    assert status == 201, opened
    status, body, _ = await request(system, conn, method, {param: "tok-1", **extra}, headers=headers)
    assert status == 200, body
    await recorded(system, conn["id"])
    status, test = await system.api("GET", f"/v1/connections/{conn['id']}/tests/{opened['id']}")
    assert status == 200 and test["state"] == "waiting", test


async def test_an_asana_handshake_teaches_the_secret_but_only_a_signed_event_connects(system: System) -> None:
    conn = await system.create("asana")
    hook_secret = "4f1b7c2a9d3e8f605b1c2d3e4f5a6b7c"
    status, _, headers = await request(system, conn, "POST", headers={"X-Hook-Secret": hook_secret})
    assert (status, headers.get("X-Hook-Secret")) == (200, hook_secret)
    [entry] = await recorded(system, conn["id"])
    assert entry["outcome"] == "reachable"
    view = await system.get(conn["id"])
    assert view["state"] == "pending" and view["secret_learnt_at"] is not None
    event = b'{"events":[]}'
    status, _, _ = await request(system, conn, "POST", body=event,
                                 headers={"X-Hook-Signature": hmac_sha(hook_secret, event).hex()})
    assert status == 202
    view = await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
    assert view["reason"] == "verified_event"


async def test_handshakes_that_prove_the_secret_or_a_setting_still_connect(system: System) -> None:
    slack = await system.create("slack", secret=SLACK_SECRET)
    body = orjson.dumps({"type": "url_verification", "token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gm"})
    status, reply, _ = await request(system, slack, "POST", body=body, headers=slack_signed(body))
    assert (status, reply) == (200, b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gm")
    zoom = await system.create("zoom", secret=ZOOM_SECRET)
    body = orjson.dumps({"event": "endpoint.url_validation", "payload": {"plainToken": "qgg8vlvZRS6UYooatFL8Aw"}})
    status, reply, _ = await request(system, zoom, "POST", body=body, headers=zoom_signed(body))
    assert status == 200, reply
    meta = await system.create("meta", settings=META)
    query = {"hub.mode": "subscribe", "hub.verify_token": META["verify_token"], "hub.challenge": "1158201444"}
    status, reply, _ = await request(system, meta, "GET", query)
    assert (status, reply) == (200, b"1158201444")
    for conn in (slack, zoom, meta):
        view = await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
        assert view["reason"] == "handshake_completed"
    # The same handshakes without the proof connect nothing.
    forged = await system.create("slack", secret=SLACK_SECRET)
    body = orjson.dumps({"type": "url_verification", "challenge": "abc"})
    status, _, _ = await request(system, forged, "POST", body=body, headers={"X-Slack-Request-Timestamp": "1"})
    assert status == 401
    guess = await system.create("meta", settings=META)
    status, _, _ = await request(system, guess, "GET", {**query, "hub.verify_token": "guess"})
    assert status == 403
    for conn in (forged, guess):
        await recorded(system, conn["id"])
        assert (await system.get(conn["id"]))["state"] == "pending"


def test_every_handshake_provider_says_what_its_handshake_proves() -> None:
    """``handshake_proof`` is ``secret``, ``setting`` or ``nothing`` for every provider with a handshake,
    and docs/PROVIDERS.md says it in a line of its own."""
    docs = (ROOT / "docs" / "PROVIDERS.md").read_text()
    with_handshake = {name for name, p in PROVIDERS.items() if p.info.handshake}
    assert with_handshake >= {"slack", "zoom", "meta", "dropbox", "twitter", "asana", "msgraph"}
    for name in with_handshake:
        proof = PROVIDERS[name].handshake_proof
        assert proof in ("secret", "setting", "nothing"), name
        assert f"- `{name}`: handshake proves {proof}" in docs, name
    in_catalog = {e.id: e for e in load_catalog("").entries}
    unsigned_presets = {i for i, e in in_catalog.items() if e.handshake and not e.handshake.signed}
    assert {n for n in with_handshake if PROVIDERS[n].handshake_proof == "nothing"} == {
        "dropbox", "twitter", "asana", "msgraph"} | unsigned_presets


# --- no reply is a signature a stranger can use ---------------------------------------------------


async def test_a_crc_token_that_could_be_an_event_is_refused(system: System) -> None:
    conn, status, body, _ = await echo(system, "twitter", EVENT_LIKE.decode())
    assert status == 400, body
    assert orjson.loads(body)["error"]["code"] == "invalid_handshake_token"
    # The attack it stops: the CRC reply is the event signature of the token's bytes.
    status, body, _ = await request(system, conn, "POST", body=EVENT_LIKE, headers={
        "x-twitter-webhooks-signature": "sha256=" + base64.b64encode(hmac_sha(TWITTER_SECRET, EVENT_LIKE)).decode()})
    assert status == 202  # (signed with the real secret here: the body is a fine event)
    assert (await system.wait_for(conn["id"], lambda v: v["state"] == "connected"))["events_received"] == 1


async def test_a_crc_reply_never_verifies_as_an_event(system: System) -> None:
    conn, status, body, _ = await echo(system, "twitter", "NjQ0MDUwNzU0NDA3NzA3MzYw-_+/=")
    assert status == 200, body
    signature = orjson.loads(body)["response_token"]
    status, reply, _ = await request(system, conn, "POST", body=b"NjQ0MDUwNzU0NDA3NzA3MzYw-_+/=",
                                     headers={"x-twitter-webhooks-signature": signature})
    assert status == 401, reply
    assert orjson.loads(reply)["error"]["code"] == "malformed_body"
    await recorded(system, conn["id"], 2)
    view = await system.get(conn["id"])
    assert view["state"] == "pending" and view["events_received"] == 0


BAD_TOKENS = [EVENT_LIKE.decode(), '"quoted"', "<script>alert(1)</script>", "a" * 2000, "tab\there", "v0:1:{}"]


@pytest.mark.parametrize("name", sorted(ECHOES))
@pytest.mark.parametrize("token", BAD_TOKENS, ids=["json", "quoted", "html", "long", "control", "v0"])
async def test_echo_tokens_outside_the_providers_alphabet_are_400(system: System, name: str, token: str) -> None:
    if name == "msgraph" and token == "v0:1:{}":
        token = "{}"  # Graph's tokens carry colons; braces they never do
    conn, status, body, _ = await echo(system, name, token)
    assert status == 400, (name, token, body)
    assert orjson.loads(body)["error"]["code"] in ("invalid_handshake_token", "malformed_handshake")
    assert (await system.get(conn["id"]))["state"] == "pending"


async def test_signed_handshake_tokens_outside_the_alphabet_are_400(system: System) -> None:
    zoom = await system.create("zoom", secret=ZOOM_SECRET)
    event = orjson.dumps({"event": "meeting.started", "payload": {}})
    body = orjson.dumps({"event": "endpoint.url_validation", "payload": {"plainToken": f"v0:1:{event.decode()}"}})
    status, reply, _ = await request(system, zoom, "POST", body=body, headers=zoom_signed(body))
    assert status == 400 and orjson.loads(reply)["error"]["code"] == "invalid_handshake_token", reply
    slack = await system.create("slack", secret=SLACK_SECRET)
    body = orjson.dumps({"type": "url_verification", "challenge": EVENT_LIKE.decode()})
    status, reply, _ = await request(system, slack, "POST", body=body, headers=slack_signed(body))
    assert status == 400 and orjson.loads(reply)["error"]["code"] == "invalid_handshake_token", reply
    meta = await system.create("meta", settings=META)
    query = {"hub.mode": "subscribe", "hub.verify_token": META["verify_token"], "hub.challenge": '{"a":1}'}
    status, reply, _ = await request(system, meta, "GET", query)
    assert status == 400 and orjson.loads(reply)["error"]["code"] == "invalid_handshake_token", reply
    asana = await system.create("asana")
    status, reply, _ = await request(system, asana, "POST", headers={"X-Hook-Secret": '{"events":[]}'})
    assert status == 400 and orjson.loads(reply)["error"]["code"] == "invalid_handshake_token", reply


# --- handshakes are rate-limited per connection ---------------------------------------------------


@pytest.fixture
async def tight(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[System]:
    monkeypatch.setenv("HANDSHAKE_BURST", "3")  # the receiver's settings only
    monkeypatch.setenv("HANDSHAKE_PER_S", "0.01")
    async with start_system(amqp_url, redis_url, prefix) as running:
        yield running


async def test_handshake_replies_are_rate_limited_per_connection(tight: System) -> None:
    conn = await tight.create("dropbox", secret=DROPBOX_SECRET)
    other = await tight.create("dropbox", secret=DROPBOX_SECRET)
    answers = [(await request(tight, conn, "GET", {"challenge": f"c{i}"}))[:2] for i in range(5)]
    assert [s for s, _ in answers] == [200, 200, 200, 429, 429]
    assert orjson.loads(answers[3][1])["error"]["code"] == "too_many_handshakes"
    status, _, headers = await request(tight, conn, "GET", {"challenge": "c9"})
    assert status == 429 and int(headers["Retry-After"]) >= 1
    assert (await request(tight, other, "GET", {"challenge": "x"}))[0] == 200  # per connection
    # Only the answered ones were recorded.
    assert len(await recorded(tight, conn["id"], 3)) == 3
