"""Providers checked against their own official SDK (PyPI or npm), through the running receiver.

For each provider below, the test builds requests the way the provider signs them, then asks the
provider's SDK to judge each one before it is sent:

- the genuine request: the SDK accepts it, and the receiver answers 202 and the connection turns
  ``connected``;
- the same request with its body changed, signed with another secret (or key), without its signature,
  and (where the SDK judges time itself) an hour old: the SDK refuses each, and the receiver refuses
  each with the reason code that says why (``signature_mismatch``, ``missing_header``,
  ``timestamp_too_old``).

So a request is accepted here exactly when the provider's own code would accept it. npm SDKs are asked
through ``tests/providers/node/verify.mjs`` (installed by ``make setup`` into
``tests/providers/node/node_modules``). Providers whose SDK signs rather than verifies (Braintree's
sample notifications, Adyen's HMAC helper) are in test_catalog_sdks.py.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.providers.catalog import load
from tests.providers.catalog_signer import Request, Signer
from tests.providers.code_signer import CodeSigner
from tests.providers.flow import accepted, connection, rejected
from tests.system import System

ENTRIES = {e.id: e for e in load("").entries}
NODE_DIR = Path(__file__).with_name("node")
NODE = shutil.which("node")


# -- the SDKs' verdicts ------------------------------------------------------------------------------


def _header(headers: dict[str, str], name: str) -> str:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), "")


def _passes(call: Callable[[], Any]) -> bool:
    """True when ``call`` returns without raising (the SDK's verifiers raise on a bad request)."""
    try:
        call()
    except Exception:  # noqa: BLE001 - each SDK raises its own error type; any of them is a refusal
        return False
    return True


def openai_accepts(req: Request, secret: str, url: str) -> bool:
    import openai

    client = openai.OpenAI(api_key="sk-test", webhook_secret=secret)
    return _passes(lambda: client.webhooks.verify_signature(req.body, req.headers))


def replicate_accepts(req: Request, secret: str, url: str) -> bool:
    from replicate.webhook import Webhooks, WebhookSigningSecret

    return _passes(lambda: Webhooks.validate(headers=req.headers, body=req.body.decode(),
                                             secret=WebhookSigningSecret(key=secret), tolerance=300))


def polar_accepts(req: Request, secret: str, url: str) -> bool:
    from polar.webhooks import validate_event

    kinds = frozenset({"order.created"})
    return _passes(lambda: validate_event(req.body, req.headers, secret, kinds, lambda data: data))


def easypost_accepts(req: Request, secret: str, url: str) -> bool:
    from easypost.util import validate_webhook

    headers = {"X-Hmac-Signature": _header(req.headers, "X-Hmac-Signature")} if _header(
        req.headers, "X-Hmac-Signature") else {}
    return _passes(lambda: validate_webhook(req.body, headers, secret))


def coinbase_accepts(req: Request, secret: str, url: str) -> bool:
    from coinbase_commerce.webhook import Webhook

    return _passes(lambda: Webhook.construct_event(req.body.decode(), _header(req.headers, "X-CC-Webhook-Signature"),
                                                   secret))


def modern_treasury_accepts(req: Request, secret: str, url: str) -> bool:
    from modern_treasury import ModernTreasury

    client = ModernTreasury(api_key="test", organization_id="org", webhook_key=secret)
    return _passes(lambda: client.webhooks.validate_signature(req.body.decode(), req.headers) or 1 / 0)


def discord_accepts(req: Request, secret: str, url: str) -> bool:
    from discord_interactions import verify_key

    signature, stamp = _header(req.headers, "X-Signature-Ed25519"), _header(req.headers, "X-Signature-Timestamp")
    return bool(signature) and bool(stamp) and verify_key(req.body, signature, stamp, secret)


def stream_accepts(req: Request, secret: str, url: str) -> bool:
    from stream_chat import StreamChat

    return StreamChat(api_key="key", api_secret=secret).verify_webhook(req.body, _header(req.headers, "X-Signature"))


def elevenlabs_accepts(req: Request, secret: str, url: str) -> bool:
    from elevenlabs.client import ElevenLabs

    hooks = ElevenLabs(api_key="test").webhooks
    return _passes(lambda: hooks.construct_event(req.body.decode(), _header(req.headers, "ElevenLabs-Signature"),
                                                 secret))


def square_accepts(req: Request, secret: str, url: str) -> bool:
    from square.utils.webhooks_helper import verify_signature

    return verify_signature(request_body=req.body.decode(), signature_header=_header(
        req.headers, "x-square-hmacsha256-signature"), signature_key=secret, notification_url=url)


def razorpay_accepts(req: Request, secret: str, url: str) -> bool:
    import razorpay

    return _passes(lambda: razorpay.Utility(None).verify_webhook_signature(
        req.body.decode(), _header(req.headers, "X-Razorpay-Signature"), secret))


def gocardless_accepts(req: Request, secret: str, url: str) -> bool:
    import gocardless_pro.webhooks

    return _passes(lambda: gocardless_pro.webhooks.parse(req.body, secret, _header(req.headers, "Webhook-Signature")))


def line_accepts(req: Request, secret: str, url: str) -> bool:
    from linebot.v3.webhook import SignatureValidator

    signature = _header(req.headers, "x-line-signature")
    return bool(signature) and SignatureValidator(secret).validate(req.body.decode(), signature)


def svix_accepts(req: Request, secret: str, url: str) -> bool:
    import svix.webhooks

    return _passes(lambda: svix.webhooks.Webhook(secret).verify(req.body, req.headers))


def telnyx_accepts(req: Request, secret: str, url: str) -> bool:
    from telnyx.lib.webhook_verification import verify_webhook_signature

    return _passes(lambda: verify_webhook_signature(req.body.decode(), req.headers, secret))


def stripe_accepts(req: Request, secret: str, url: str) -> bool:
    import stripe

    return _passes(lambda: stripe.WebhookSignature.verify_header(
        req.body.decode(), _header(req.headers, "Stripe-Signature"), secret, tolerance=300))


def slack_accepts(req: Request, secret: str, url: str) -> bool:
    from slack_sdk.signature import SignatureVerifier

    return SignatureVerifier(secret).is_valid(req.body, _header(req.headers, "X-Slack-Request-Timestamp"),
                                              _header(req.headers, "X-Slack-Signature"))


def standard_accepts(req: Request, secret: str, url: str) -> bool:
    import standardwebhooks

    return _passes(lambda: standardwebhooks.Webhook(secret).verify(req.body, req.headers))


def paddle_accepts(req: Request, secret: str, url: str) -> bool:
    from paddle_billing.Notifications import Secret, Verifier  # type: ignore[import-untyped]

    @dataclass
    class Received:  # what the Verifier reads
        headers: dict[str, str]
        body: bytes

        def get_data(self) -> bytes:
            return self.body

    return _passes(lambda: Verifier().verify(Received(req.headers, req.body), Secret(secret)) or 1 / 0)


def hubspot_accepts(req: Request, secret: str, url: str) -> bool:
    from hubspot.utils.signature import Signature

    return _passes(lambda: Signature.is_valid(
        _header(req.headers, "X-HubSpot-Signature-v3"), secret, req.body.decode(), url, "POST", signature_version="v3",
        timestamp=_header(req.headers, "X-HubSpot-Request-Timestamp")) or 1 / 0)


def twilio_accepts(req: Request, secret: str, url: str) -> bool:
    from urllib.parse import parse_qsl

    from twilio.request_validator import RequestValidator

    params = dict(parse_qsl(req.body.decode(), keep_blank_values=True))
    return RequestValidator(secret).validate(url, params, _header(req.headers, "X-Twilio-Signature"))


def pusher_accepts(req: Request, secret: str, url: str) -> bool:
    import pusher

    key = _header(req.headers, "X-Pusher-Key")
    client = pusher.Pusher(app_id="1", key=key, secret=secret, cluster="eu")
    return client.validate_webhook(key, _header(req.headers, "X-Pusher-Signature"), req.body.decode()) is not None


def sendgrid_accepts(req: Request, secret: str, url: str) -> bool:
    from sendgrid.helpers.eventwebhook import EventWebhook

    checker = EventWebhook()
    signature = _header(req.headers, "X-Twilio-Email-Event-Webhook-Signature")
    stamp = _header(req.headers, "X-Twilio-Email-Event-Webhook-Timestamp")
    return bool(signature) and _passes(lambda: checker.verify_signature(
        req.body.decode(), signature, stamp, checker.convert_public_key_to_ecdsa(secret)) or 1 / 0)


def box_accepts(req: Request, secret: str, url: str) -> bool:
    from box_sdk_gen.managers.webhooks import WebhooksManager

    lower = {k.lower(): v for k, v in req.headers.items()}
    return bool(WebhooksManager.validate_message(req.body.decode(), lower, secret))


def vonage_accepts(req: Request, secret: str, url: str) -> bool:
    from vonage_jwt.verify_jwt import verify_signature

    token = _header(req.headers, "Authorization").removeprefix("Bearer ")
    return bool(token) and _passes(lambda: verify_signature(token, secret) or 1 / 0)


def finch_accepts(req: Request, secret: str, url: str) -> bool:
    from finch import Finch

    client = Finch(access_token="test", webhook_secret=secret)
    return _passes(lambda: client.webhooks.verify_signature(req.body.decode(), req.headers))


def lithic_accepts(req: Request, secret: str, url: str) -> bool:
    from lithic import Lithic

    client = Lithic(api_key="test", webhook_secret=secret)
    return _passes(lambda: client.webhooks.verify_signature(req.body.decode(), req.headers))


def workos_accepts(req: Request, secret: str, url: str) -> bool:
    from workos.webhooks import Webhooks

    hooks = Webhooks(client=None)  # type: ignore[arg-type]
    return _passes(lambda: hooks.verify_header(event_body=req.body, event_signature=_header(
        req.headers, "WorkOS-Signature"), secret=secret))


def workos_spacing(req: Request) -> Request:
    """WorkOS writes its header 't=…, v1=…' (its SDK splits on ', ')."""
    headers = {k: (v.replace(",", ", ") if k.lower() == "workos-signature" else v) for k, v in req.headers.items()}
    return Request(req.body, headers, req.query, req.method)


def node_accepts(package: str) -> Callable[[Request, str, str], bool]:
    def accepts(req: Request, secret: str, url: str) -> bool:
        if NODE is None:
            pytest.skip(f"{package} is an npm package and this machine has no node")
        assert (NODE_DIR / "node_modules" / package).exists(), f"{package} is not installed: run `make setup`"
        job = {"sdk": package, "secret": secret, "url": url + (f"?{req.query}" if req.query else ""),
               "method": req.method, "headers": req.headers, "body": base64.b64encode(req.body).decode()}
        done = subprocess.run([NODE, str(NODE_DIR / "verify.mjs")], input=json.dumps(job), capture_output=True,
                              text=True, cwd=NODE_DIR, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        verdict = json.loads(done.stdout.strip().splitlines()[-1])
        return bool(verdict["accepted"])
    return accepts


# -- the table --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SdkCheck:
    provider: str
    package: str  # as the catalog writes it: checked_against = "sdk:<package>"
    accepts: Callable[[Request, str, str], bool]  # (request, the connection's secret, its URL) -> verdict
    body: dict[str, Any] | None = None  # a body in the shape the SDK reads, when it reads one
    headers: dict[str, str] = field(default_factory=dict)
    timed: bool = False  # the SDK refuses a stale timestamp itself
    event_type: str | None = None  # what the delivery's event_type must be (None: not checked)
    body_judged: bool = True  # False: the SDK checks the token, not the body it covers (we check both)
    written: Callable[[Request], Request] = lambda req: req  # how the provider writes what was signed
    # Further requests the SDK refuses: (what, how the signer's request() is called, our reason code).
    more: tuple[tuple[str, dict[str, Any], str], ...] = ()


ORDER = {"id": "evt_sdk_1", "type": "order.created", "data": {"amount": 1999}}
CHECKS = [
    SdkCheck("openai", "openai", openai_accepts, ORDER, timed=True, event_type="order.created"),
    SdkCheck("replicate", "replicate", replicate_accepts, {"id": "pred_1", "status": "succeeded"}, timed=True,
             event_type="succeeded"),
    SdkCheck("polar", "polar-sdk", polar_accepts, ORDER, timed=True, event_type="order.created"),
    SdkCheck("easypost", "easypost", easypost_accepts,
             {"id": "evt_ep_1", "object": "Event", "description": "tracker.updated"}, event_type="tracker.updated"),
    SdkCheck("coinbase-commerce", "coinbase-commerce", coinbase_accepts,
             {"id": 1, "event": {"id": "cb-evt-1", "type": "charge:confirmed", "data": {}}},
             event_type="charge:confirmed"),
    SdkCheck("modern-treasury", "modern-treasury", modern_treasury_accepts, ORDER,
             headers={"X-Topic": "payment_order", "X-Event-Id": "mt-evt-1"}, event_type="payment_order"),
    SdkCheck("discord", "discord-interactions", discord_accepts, {"id": "int_1", "type": 2, "data": {}}),
    SdkCheck("stream", "stream-chat", stream_accepts, {"type": "message.new", "message": {"id": "m1"}},
             event_type="message.new"),
    SdkCheck("elevenlabs", "elevenlabs", elevenlabs_accepts, {"type": "post_call_transcription", "data": {}},
             timed=True, event_type="post_call_transcription"),
    SdkCheck("square", "squareup", square_accepts,
             {"event_id": "sq-evt-1", "type": "payment.updated", "data": {}}, event_type="payment.updated"),
    SdkCheck("razorpay", "razorpay", razorpay_accepts, {"entity": "event", "event": "payment.captured"},
             event_type="payment.captured"),
    SdkCheck("gocardless", "gocardless_pro", gocardless_accepts,
             {"events": [{"id": "EV1", "resource_type": "payments", "action": "confirmed"}]}, event_type="payments"),
    SdkCheck("line", "line-bot-sdk", line_accepts,
             {"destination": "U1", "events": [{"type": "message", "webhookEventId": "01H", "mode": "active"}]},
             event_type="message"),
    SdkCheck("clerk", "svix", svix_accepts, {"type": "user.created", "data": {"id": "user_1"}}, timed=True,
             event_type="user.created"),
    SdkCheck("resend", "svix", svix_accepts, {"type": "email.sent", "data": {}}, timed=True,
             event_type="email.sent"),
    SdkCheck("stytch", "svix", svix_accepts, {"action": "CREATE", "object_type": "user"}, timed=True),
    SdkCheck("telnyx", "telnyx", telnyx_accepts,
             {"data": {"id": "tx-1", "event_type": "message.received", "payload": {}}}, timed=True,
             event_type="message.received"),
    SdkCheck("stripe", "stripe", stripe_accepts, ORDER, timed=True, event_type="order.created"),
    SdkCheck("slack", "slack_sdk", slack_accepts, {"event_id": "Ev1", "type": "event_callback",
                                                   "event": {"type": "app_mention"}}, timed=True,
             event_type="app_mention"),
    SdkCheck("svix", "svix", svix_accepts, ORDER, timed=True, event_type="order.created"),
    SdkCheck("standard-webhooks", "standardwebhooks", standard_accepts, ORDER, timed=True,
             event_type="order.created"),
    SdkCheck("paddle", "paddle-python-sdk", paddle_accepts, {"event_id": "evt_p1", "event_type": "transaction.paid"},
             timed=True, event_type="transaction.paid"),
    SdkCheck("hubspot", "hubspot-api-client", hubspot_accepts, timed=True, event_type="contact.creation"),
    SdkCheck("twilio", "twilio", twilio_accepts),
    SdkCheck("pusher", "pusher", pusher_accepts, {"events": [{"name": "channel_occupied"}]},
             headers={"X-Pusher-Key": "app-key-123"}, timed=True, event_type="channel_occupied"),
    SdkCheck("sendgrid", "sendgrid", sendgrid_accepts,
             {"email": "a@example.com", "event": "delivered", "sg_event_id": "sg-1"}),
    SdkCheck("box", "box-sdk-gen", box_accepts,
             {"type": "webhook_event", "id": "evt-box-1", "trigger": "FILE.UPLOADED"},
             headers={"box-signature-version": "1", "box-signature-algorithm": "HmacSHA256"},
             event_type="FILE.UPLOADED"),
    SdkCheck("vonage", "vonage-jwt", vonage_accepts, {"message_uuid": "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab",
                                                      "status": "delivered"}, event_type="delivered",
             body_judged=False),
    SdkCheck("workos", "workos", workos_accepts, {"id": "event_01HW", "event": "user.created", "data": {}},
             timed=True, event_type="user.created", written=workos_spacing),
    SdkCheck("finch", "finch-api", finch_accepts, {"event_type": "account.updated", "data": {}}, timed=True,
             event_type="account.updated"),
    SdkCheck("lithic", "lithic", lithic_accepts, {"event_type": "card.created", "payload": {}}, timed=True,
             event_type="card.created"),
    SdkCheck("github", "@octokit/webhooks-methods", node_accepts("@octokit/webhooks-methods"), event_type="push"),
    SdkCheck("shopify", "@shopify/shopify-api", node_accepts("@shopify/shopify-api"),
             headers={"X-Shopify-Topic": "orders/create", "X-Shopify-Shop-Domain": "hookstatus-test.myshopify.com",
                      "X-Shopify-API-Version": "2024-10", "X-Shopify-Webhook-Id": str(uuid.uuid4()),
                      "X-Shopify-Event-Id": str(uuid.uuid4())}, event_type="orders/create"),
    SdkCheck("linear", "@linear/sdk", node_accepts("@linear/sdk"), {"type": "Issue", "action": "create"},
             timed=True, event_type="Issue.create",
             more=(("no webhookTimestamp in the signed body", {"stamped": False}, "missing_header"),)),
    SdkCheck("mux", "@mux/mux-node", node_accepts("@mux/mux-node"),
             {"id": "mux-evt-1", "type": "video.asset.ready", "data": {}}, timed=True, event_type="video.asset.ready"),
    SdkCheck("sanity", "@sanity/webhook", node_accepts("@sanity/webhook"), {"_id": "doc-1", "title": "Hello"},
             headers={"sanity-operation": "update"}, event_type="update"),
]
BY_PROVIDER = {check.provider: check for check in CHECKS}


def signer_for(provider: str) -> Signer | CodeSigner:
    return Signer(ENTRIES[provider]) if provider in ENTRIES else CodeSigner(provider)


def other_signer(provider: str, signer: Signer | CodeSigner) -> Signer | CodeSigner:
    fresh = signer_for(provider)
    return fresh.with_url(signer.url)


def signature_header(provider: str, signer: Signer | CodeSigner) -> str:
    if isinstance(signer, CodeSigner):
        return signer.signature_header
    return signer.signature_location().name


def tampered(req: Request) -> Request:
    """The same request with one more byte of body: still JSON (or a form), no longer what was signed."""
    changed = req.body[:-1] + b" }" if req.body.endswith(b"}") else req.body + b"&Extra=1"
    return Request(changed, dict(req.headers), req.query, req.method)


def unsigned(req: Request, header: str) -> Request:
    return Request(req.body, {k: v for k, v in req.headers.items() if k.lower() != header.lower()}, req.query,
                   req.method)


@pytest.mark.parametrize("provider", sorted(BY_PROVIDER))
async def test_the_providers_sdk_and_the_receiver_agree(system: System, provider: str) -> None:
    check = BY_PROVIDER[provider]
    signer = signer_for(provider)

    async def fresh() -> tuple[dict[str, Any], Signer | CodeSigner]:
        conn = await connection(system, provider, secret=signer.conn_secret)
        return conn, signer.with_url(conn["webhook_url"])

    def build(s: Signer | CodeSigner, **kw: Any) -> Request:
        return check.written(s.request(dict(check.body) if check.body else None, headers=dict(check.headers), **kw))

    conn, s = await fresh()
    genuine = build(s)
    assert check.accepts(genuine, signer.conn_secret, conn["webhook_url"]), f"{check.package} refuses it"
    delivery = await accepted(system, conn, genuine.body, genuine.headers, method=genuine.method,
                              query=genuine.query)
    if check.event_type is not None:
        assert delivery["event_type"] == check.event_type

    refusals: list[tuple[str, Callable[[Signer | CodeSigner], Request], str]] = [
        ("body changed", lambda s: tampered(build(s)), "signature_mismatch"),
        ("another secret", lambda s: build(s, signed_with=other_signer(provider, s)), "signature_mismatch"),
        ("no signature", lambda s: unsigned(build(s), signature_header(provider, s)), "missing_header"),
    ]
    if check.timed:
        refusals.append(("an hour old", lambda s: build(s, skew_s=-3600), "timestamp_too_old"))
    for what, knobs, reason in check.more:
        refusals.append((what, lambda s, knobs=knobs: build(s, **knobs), reason))  # type: ignore[misc]
    for case, make, code in refusals:
        conn, s = await fresh()
        req = make(s)
        if case != "body changed" or check.body_judged:
            assert not check.accepts(req, signer.conn_secret, conn["webhook_url"]), f"{check.package} accepts: {case}"
        await rejected(system, conn, req.body, req.headers, code, method=req.method, query=req.query)


def test_every_check_names_the_package_its_provider_records() -> None:
    from shared.providers import PROVIDERS

    for check in CHECKS:
        assert PROVIDERS[check.provider].info.checked_against == f"sdk:{check.package}", check.provider


async def test_contentful_toolkit_accepts_what_connects(system: System) -> None:
    """Contentful's request verification (its scheme is code, not a family) judged by Contentful's own
    @contentful/node-apps-toolkit."""
    from tests.providers.test_catalog_sdks import _contentful_headers

    judge = node_accepts("@contentful/node-apps-toolkit")
    secret = uuid.uuid4().hex * 2  # Contentful's signing secrets are 64 characters
    body = orjson.dumps({"sys": {"id": "entry-9", "type": "Entry"}, "fields": {"title": {"en-US": "Hi"}}})
    conn = await connection(system, "contentful", secret=secret)
    req = Request(body, _contentful_headers(secret, conn["webhook_url"], body))
    assert judge(req, secret, conn["webhook_url"])
    delivery = await accepted(system, conn, req.body, req.headers)
    assert delivery["event_id"] == "contentful:entry-9"
    for case, key, skew, extra, code in (("body changed", secret, 0, b" ", "signature_mismatch"),
                                         ("another secret", "x" * 64, 0, b"", "signature_mismatch"),
                                         ("an hour old", secret, -3600, b"", "timestamp_too_old")):
        other = await connection(system, "contentful", secret=secret)  # the URL is signed: one per connection
        bad = Request(body + extra, _contentful_headers(key, other["webhook_url"], body, skew_s=skew))
        assert not judge(bad, secret, other["webhook_url"]), case
        await rejected(system, other, bad.body, bad.headers, code)
