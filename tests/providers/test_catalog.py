"""Every catalog provider through the running receiver and verifier, data-driven from the catalog: a
request signed as the entry describes turns a connection connected; a tampered body, another secret,
a missing or malformed signature and a stale timestamp are refused with their reason codes; and the
handshake is answered the way the provider expects.

Requests are signed by ``catalog_signer`` (``hmac``, ``cryptography``, PyJWT written out), never by the
adapters. Providers whose own SDK signs or verifies are checked against it in test_catalog_sdks.py;
braintree, adyen and contentful (code, not a family) are there too.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import orjson
import pytest

from shared.providers import PROVIDERS
from shared.providers.catalog import load
from shared.providers.catalog_spec import Entry, Handshake, Location
from tests.providers.catalog_signer import Request, Signer
from tests.providers.flow import accepted, connection, deliver, rejected
from tests.providers.kit import delivery_list
from tests.system import System

ENTRIES = {e.id: e for e in load("").entries}
CODED = {"braintree", "adyen", "contentful"}  # signed by their SDKs / spelled out in test_catalog_sdks.py
GENERIC = sorted(set(ENTRIES) - CODED)
WITH_HANDSHAKE = sorted(i for i in GENERIC if ENTRIES[i].handshake is not None)


def body_is_signed(entry: Entry) -> bool:
    if entry.family == "standard-webhooks":
        return True
    if entry.family == "jwt":
        return bool(entry.jwt and entry.jwt.body_hash_claim)
    return entry.signature is not None and "{body}" in entry.signature.template


async def send(system: System, conn: dict[str, Any], req: Request) -> tuple[int, Any]:
    return await deliver(system, conn, req.body, req.headers, method=req.method, query=req.query)


async def refused(system: System, entry: Entry, build: Any, code: str) -> dict[str, Any]:
    """``build(signer)`` makes a request for a fresh connection; it must be a 401 with ``code``."""
    signer = Signer(entry)
    conn = await connection(system, entry.id, secret=signer.conn_secret)
    req: Request = build(signer.with_url(conn["webhook_url"]))
    return await rejected(system, conn, req.body, req.headers, code, method=req.method, query=req.query)


def without(req: Request, at: Location) -> Request:
    """The request with the value at ``at`` removed."""
    if at.kind == "header":
        req.headers = {k: v for k, v in req.headers.items() if k.lower() != at.name.lower()}
    elif at.kind == "query":
        req.query = ""
    else:
        data = orjson.loads(req.body)
        node = data
        steps = at.name.split("/")[1:]
        for step in steps[:-1]:
            node = node[step]
        node.pop(steps[-1])
        req.body = orjson.dumps(data)
    return req


def malformed(entry: Entry, req: Request, at: Location) -> Request | None:
    """The request with an unreadable signature, or None where any value is simply another secret."""
    if entry.family == "token":
        return None
    if entry.family == "standard-webhooks":
        bad = "v1,not*base64"
    elif entry.family == "jwt":
        bad = ((entry.jwt.scheme + " ") if entry.jwt and entry.jwt.scheme else "") + "not-a-jwt"
    elif entry.family == "basic":
        bad = "Basic not*base64"
    else:
        assert entry.signature is not None
        sig = entry.signature
        bad = "no-key-value-pairs" if sig.kv_signature else sig.prefix + "not*a*signature"
    if at.kind == "header":
        req.headers[at.name] = bad
    elif at.kind == "query":
        req.query = f"{at.name}={bad}"
    else:
        data = orjson.loads(req.body)
        data["signature"]["signature"] = bad
        req.body = orjson.dumps(data)
    return req


def test_catalog_covers_enough_providers_and_handshakes() -> None:
    assert len(PROVIDERS) >= 120
    assert sum(1 for p in PROVIDERS.values() if p.info.handshake) >= 26
    required = {"discord", "line", "razorpay", "gocardless", "sendgrid", "telnyx", "workos", "pusher", "vonage",
                "braintree", "box", "mux", "clerk", "resend", "gitlab", "bitbucket", "twitch", "okta", "monday",
                "trello", "mailgun", "postmark", "lemonsqueezy", "coinbase-commerce", "adyen", "woocommerce",
                "bigcommerce", "xero", "quickbooks", "sentry", "notion", "zendesk", "contentful", "sanity",
                "vercel", "circleci", "frontapp", "mollie", "docusign", "nylas"}
    assert required <= set(PROVIDERS), sorted(required - set(PROVIDERS))


@pytest.mark.parametrize("provider", GENERIC)
async def test_signed_request_connects_and_bad_ones_are_refused(system: System, provider: str) -> None:
    entry = ENTRIES[provider]
    signer = Signer(entry)
    conn = await connection(system, provider, secret=signer.conn_secret)
    req = signer.with_url(conn["webhook_url"]).request()
    delivery = await accepted(system, conn, req.body, req.headers, method=req.method, query=req.query)
    assert delivery["is_test"] is False
    at = signer.signature_location()

    if body_is_signed(entry):
        def tampered(s: Signer) -> Request:
            r = s.request()
            r.body = r.body.replace(b"1999", b"1")
            return r
        await refused(system, entry, tampered, "signature_mismatch")
    await refused(system, entry, lambda s: s.request(signed_with=Signer.other(entry).with_url(s.url)),
                  "signature_mismatch")
    reply = await refused(system, entry, lambda s: without(s.request(), at), "missing_header")
    assert at.name.lower() in reply["error"]["message"].lower()
    if malformed(entry, Signer(entry).request(), at) is not None:
        await refused(system, entry, lambda s: malformed(entry, s.request(), at), "malformed_signature")
    if entry.timestamp is not None or entry.family == "standard-webhooks":
        reply = await refused(system, entry, lambda s: s.request(skew_s=-4000), "timestamp_too_old")
        assert "s old" in reply["error"]["message"]


def handshake_request(entry: Entry, shake: Handshake, signer: Signer, token: str) -> Request:
    """The handshake as the provider sends it: its conditions met, the token where it carries it, and
    signed when the provider signs it."""
    body: dict[str, Any] = {}
    headers: dict[str, str] = {}
    query: dict[str, str] = {}
    method = "POST"
    for cond in shake.when:
        if cond.location is None:
            method = cond.value or "POST"
            continue
        if cond.absent:
            continue
        value: Any = token if shake.token == cond.location else (cond.value or token)
        if cond.value == "[]":
            value = []
        elif cond.location.kind == "json" and cond.value is not None and cond.value.isdigit():
            value = int(cond.value)
        _place(cond.location, value, body, headers, query)
    if shake.token is not None:
        _place(shake.token, token, body, headers, query)
    if any(c.location is not None and c.location.kind == "form" for c in shake.when):
        req = Request(f"webhook_id={token}".encode(), {"Content-Type": "application/x-www-form-urlencoded"})
    elif shake.signed:
        req = signer.request(body, headers=headers)
        req.headers.update(headers)
    else:
        req = Request(orjson.dumps(body) if method == "POST" else b"", {"Content-Type": "application/json", **headers})
    req.method = method
    req.query = "&".join(f"{k}={v}" for k, v in query.items())
    return req


def _place(at: Location, value: Any, body: dict[str, Any], headers: dict[str, str], query: dict[str, str]) -> None:
    if at.kind == "header":
        headers[at.name] = str(value)
    elif at.kind == "query":
        query[at.name] = str(value)
    elif at.kind == "json":
        node: Any = body
        steps = at.name.split("/")[1:]
        for step, after in zip(steps, steps[1:], strict=False):
            fresh: Any = [] if after.isdigit() else {}
            if isinstance(node, list):
                while len(node) <= int(step):
                    node.append(fresh)
                node = node[int(step)]
            else:
                node = node.setdefault(step, fresh)
        if isinstance(node, list):
            node.append(value)
        else:
            node[steps[-1]] = value


@pytest.mark.parametrize("provider", WITH_HANDSHAKE)
async def test_handshake_is_answered_as_the_provider_expects(system: System, provider: str) -> None:
    entry = ENTRIES[provider]
    shake = entry.handshake
    assert shake is not None
    signer = Signer(entry)
    conn = await connection(system, provider, secret=signer.conn_secret)
    token = secrets.token_urlsafe(16)
    req = handshake_request(entry, shake, signer.with_url(conn["webhook_url"]), token)
    url = conn["webhook_url"] + (f"?{req.query}" if req.query else "")
    async with system.session.request(req.method, url, data=req.body, headers=req.headers) as resp:
        status, text, reply_headers = resp.status, await resp.read(), resp.headers
    assert status == shake.reply_status, text
    if shake.reply == "text":
        assert text == token.encode()
    elif shake.reply == "json":
        expected = {k: (token if v == "{token}" else v) for k, v in shake.reply_json.items()}
        assert orjson.loads(text) == expected
    else:
        assert text == b""
    for name, value in shake.reply_headers.items():
        assert reply_headers[name] == value.replace("{token}", token)
    entries = await _deliveries(system, conn["id"])
    assert entries[0]["handshake"] is True and entries[0]["event_type"] == shake.event_type
    if not shake.signed:  # anyone can send it: recorded as reachable, never as verification
        assert entries[0]["outcome"] == "reachable"
        assert (await system.get(conn["id"]))["state"] == "pending"
    if shake.signed:  # a signed handshake proves the secret: the connection is verified by it
        view = await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
        assert view["events_received"] >= 1
        fresh = await connection(system, provider, secret=signer.conn_secret)
        forged = handshake_request(entry, shake, Signer.other(entry).with_url(fresh["webhook_url"]), token)
        await rejected(system, fresh, forged.body, forged.headers, "signature_mismatch",
                       method=forged.method, query=forged.query)


async def _deliveries(system: System, cid: str) -> list[dict[str, Any]]:
    for _ in range(100):
        entries = await delivery_list(system, cid)
        if entries:
            return entries
        import asyncio

        await asyncio.sleep(0.05)
    raise AssertionError("the handshake was not recorded")


@pytest.mark.parametrize(("configured", "sender", "title"), [
    ("woocommerce", "shopify", "Shopify"),
    ("gitea", "github", "GitHub"),
    ("resend", "stripe", "Stripe"),
])
async def test_another_providers_signature_is_named(system: System, configured: str, sender: str,
                                                    title: str) -> None:
    import base64
    import time

    import stripe

    from tests.providers.flow import hmac_sha

    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    body = orjson.dumps({"id": f"evt_{uuid.uuid4().hex[:8]}", "type": "order.created"})
    headers = {
        "shopify": {"X-Shopify-Hmac-Sha256": base64.b64encode(hmac_sha(secret, body)).decode(),
                    "X-Shopify-Topic": "orders/create"},
        "github": {"X-Hub-Signature-256": "sha256=" + hmac_sha(secret, body).hex(), "X-GitHub-Event": "push"},
        "stripe": {"Stripe-Signature": stripe.WebhookSignature.generate_signature_header(
            body.decode(), secret, int(time.time()))},
    }[sender]
    conn = await connection(system, configured, secret=secret)
    reply = await rejected(system, conn, body, headers, "wrong_provider")
    message = reply["error"]["message"]
    assert f"This is a {title} signature" in message
    assert f"set up as {PROVIDERS[configured].info.title}" in message


async def test_providers_list_has_categories_setup_steps_and_search(system: System) -> None:
    status, body = await system.api("GET", "/v1/providers")
    assert status == 200
    assert len(body["providers"]) == len(PROVIDERS)
    assert body["categories"] == sorted({p.info.category for p in PROVIDERS.values()})
    discord = next(p for p in body["providers"] if p["name"] == "discord")
    assert discord["category"] == "communication" and discord["setup"] and discord["handshake"]
    assert discord["docs_url"].startswith("https://discord.com/")
    assert discord["checked_against"] == "sdk:discord-interactions"
    status, body = await system.api("GET", "/v1/providers", params={"q": "Payments STRIPE"})
    assert status == 200 and [p["name"] for p in body["providers"]] == ["stripe"]
    assert body["categories"] == ["payments"]
    status, body = await system.api("GET", "/v1/providers", params={"q": "e-signature"})
    assert {p["name"] for p in body["providers"]} == {"docusign", "pandadoc", "documenso"}
    status, body = await system.api("GET", "/v1/providers", params={"q": "no-such-provider-anywhere"})
    assert status == 200 and body == {"providers": [], "categories": []}
