"""Catalog providers checked against their own SDKs, through the running receiver: the SDK signs the
request (or accepts the very request the test signed), and the connection turns connected. Also
braintree, adyen and contentful, whose schemes are code rather than a family, and the rule that every
``sdk:`` entry in the catalog is really exercised by an SDK test."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
import tomllib
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import Adyen.util
import gocardless_pro.webhooks
import orjson
import pusher
import pytest
import razorpay
import standardwebhooks
import svix.webhooks
from box_sdk_gen.managers.webhooks import WebhooksManager
from linebot.v3.webhook import SignatureValidator
from sendgrid.helpers.eventwebhook import EventWebhook
from telnyx.lib.webhook_verification import WebhookVerificationError, verify_webhook_signature
from vonage_jwt.verify_jwt import verify_signature
from workos.webhooks import Webhooks

from shared.providers import PROVIDERS
from shared.providers.catalog import load
from tests.providers.catalog_signer import Signer
from tests.providers.flow import accepted, connected, connection, deliver, rejected
from tests.system import System

with warnings.catch_warnings():  # braintree warns about its own deprecated names at import
    warnings.simplefilter("ignore", DeprecationWarning)
    import braintree

ENTRIES = {e.id: e for e in load("").entries}
ROOT = Path(__file__).resolve().parents[2]

# Which catalog providers each SDK checks here (every sdk:<package> entry must be listed).
SDK_PROVIDERS = {
    "razorpay": {"razorpay"},
    "gocardless_pro": {"gocardless"},
    "pusher": {"pusher"},
    "line-bot-sdk": {"line"},
    "sendgrid": {"sendgrid"},
    "box-sdk-gen": {"box"},
    "braintree": {"braintree"},
    "Adyen": {"adyen"},
    "svix": {"clerk", "resend", "stytch"},
    "workos": {"workos"},
    "vonage-jwt": {"vonage"},
    "telnyx": {"telnyx"},
    "@contentful/node-apps-toolkit": {"contentful"},  # test_sdk_checks.py
    "paddle-python-sdk": {"paddle"},  # test_paddle.py (Paddle was code before the catalog)
}
# The import name of each SDK (for adapters written in code, whose own test modules use it).
IMPORTS = {"razorpay": "razorpay", "gocardless_pro": "gocardless_pro", "pusher": "pusher", "line-bot-sdk": "linebot",
           "sendgrid": "sendgrid", "box-sdk-gen": "box_sdk_gen", "braintree": "braintree", "Adyen": "Adyen",
           "svix": "svix", "standardwebhooks": "standardwebhooks", "stripe": "stripe", "slack_sdk": "slack_sdk",
           "twilio": "twilio", "hubspot-api-client": "hubspot", "paddle-python-sdk": "paddle_billing",
           "workos": "workos", "vonage-jwt": "vonage_jwt", "telnyx": "telnyx"}


def test_every_provider_says_what_it_was_checked_against() -> None:
    for provider in PROVIDERS.values():
        kind, _, what = provider.info.checked_against.partition(":")
        assert kind in ("sdk", "vector", "scheme") and what, provider.name
        if kind != "sdk":
            assert what.startswith("https://"), provider.name


def test_at_least_35_providers_are_checked_against_their_own_sdk() -> None:
    """Every sdk: record is the provider's own SDK or the one its docs name for verification (Svix's for
    Clerk, Resend and Stytch); Brex and Render, signed with the generic Standard Webhooks library only,
    are recorded as their documented scheme and not counted."""
    checked = sorted(p.name for p in PROVIDERS.values() if p.info.checked_against.startswith("sdk:"))
    assert len(checked) >= 35, checked
    assert not {"brex", "render"} & set(checked)


def test_every_sdk_entry_is_exercised_by_an_sdk_test() -> None:
    from tests.providers.test_sdk_checks import BY_PROVIDER

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    pinned = {re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].lower() for spec in extras}
    node = orjson.loads((ROOT / "tests" / "providers" / "node" / "package.json").read_bytes())["dependencies"]
    pinned |= {name.lower() for name in node}
    sources = "\n".join(p.read_text() for p in (ROOT / "tests" / "providers").glob("test_*.py"))
    for provider in PROVIDERS.values():
        kind, _, package = provider.info.checked_against.partition(":")
        if kind != "sdk":
            continue
        assert package.lower() in pinned, f"{package} is not a test dependency"
        if provider.name in BY_PROVIDER:
            assert BY_PROVIDER[provider.name].package == package
        elif provider.name in ENTRIES:
            assert provider.name in SDK_PROVIDERS.get(package, set()), f"{provider.name}: no {package} test here"
        else:
            assert re.search(rf"^(import|from) {IMPORTS[package]}\b", sources, re.M), f"{package} unused"
    listed = {p for ids in SDK_PROVIDERS.values() for p in ids}
    assert all(ENTRIES[i].checked_against.startswith("sdk:") for i in listed)


async def _connect(system: System, provider: str, secret: str) -> dict[str, Any]:
    return await connection(system, provider, secret=secret)


async def test_razorpay_sdk_accepts_what_connects(system: System) -> None:
    signer = Signer(ENTRIES["razorpay"])
    body = orjson.dumps({"entity": "event", "event": "payment.captured", "payload": {"payment": {}}})
    req = signer.request(orjson.loads(body))
    signature = req.headers["X-Razorpay-Signature"]
    razorpay.Utility(None).verify_webhook_signature(req.body.decode(), signature, signer.conn_secret)
    with pytest.raises(razorpay.errors.SignatureVerificationError):
        razorpay.Utility(None).verify_webhook_signature(req.body.decode() + " ", signature, signer.conn_secret)
    conn = await _connect(system, "razorpay", signer.conn_secret)
    delivery = await accepted(system, conn, req.body, req.headers)
    assert delivery["event_type"] == "payment.captured"


async def test_gocardless_sdk_parses_what_connects(system: System) -> None:
    signer = Signer(ENTRIES["gocardless"])
    req = signer.request({"events": [{"id": "EV123", "resource_type": "payments", "action": "confirmed"}]})
    events = gocardless_pro.webhooks.parse(req.body, signer.conn_secret, req.headers["Webhook-Signature"])
    assert events[0].id == "EV123"
    with pytest.raises(gocardless_pro.webhooks.InvalidSignatureError):
        gocardless_pro.webhooks.parse(req.body, "another-secret", req.headers["Webhook-Signature"])
    conn = await _connect(system, "gocardless", signer.conn_secret)
    delivery = await accepted(system, conn, req.body, req.headers)
    assert delivery["event_id"] == "gocardless:EV123" and delivery["event_type"] == "payments"


async def test_pusher_sdk_validates_what_connects(system: System) -> None:
    signer = Signer(ENTRIES["pusher"])
    app_key = "app-key-123"
    req = signer.request({"time_ms": int(time.time() * 1000), "events": [{"name": "channel_occupied",
                                                                         "channel": "test"}]},
                         headers={"X-Pusher-Key": app_key})
    client = pusher.Pusher(app_id="1", key=app_key, secret=signer.conn_secret, cluster="eu")
    assert client.validate_webhook(app_key, req.headers["X-Pusher-Signature"], req.body.decode()) is not None
    assert client.validate_webhook(app_key, "00" * 32, req.body.decode()) is None
    conn = await _connect(system, "pusher", signer.conn_secret)
    delivery = await accepted(system, conn, req.body, req.headers)
    assert delivery["event_type"] == "channel_occupied"


async def test_line_sdk_validates_what_connects(system: System) -> None:
    signer = Signer(ENTRIES["line"])
    event = {"type": "message", "webhookEventId": "01FZ74A0TDDPYRVKNK77XKC3ZR", "mode": "active",
             "timestamp": 1462629479859, "source": {"type": "user", "userId": "U4af4980629"}}
    req = signer.request({"destination": "xxxxxxxxxx", "events": [event]})
    validator = SignatureValidator(signer.conn_secret)
    assert validator.validate(req.body.decode(), req.headers["x-line-signature"])
    assert not validator.validate(req.body.decode() + "x", req.headers["x-line-signature"])
    conn = await _connect(system, "line", signer.conn_secret)
    delivery = await accepted(system, conn, req.body, req.headers)
    assert delivery["event_id"] == "line:01FZ74A0TDDPYRVKNK77XKC3ZR" and delivery["event_type"] == "message"


async def test_sendgrid_sdk_verifies_what_connects(system: System) -> None:
    signer = Signer(ENTRIES["sendgrid"])
    req = signer.request([{"email": "a@example.com", "event": "delivered",  # type: ignore[arg-type]
                           "sg_event_id": "sg-evt-1", "timestamp": int(time.time())}])
    checker = EventWebhook()
    key = checker.convert_public_key_to_ecdsa(signer.conn_secret)
    signature = req.headers["X-Twilio-Email-Event-Webhook-Signature"]
    stamp = req.headers["X-Twilio-Email-Event-Webhook-Timestamp"]
    assert checker.verify_signature(req.body.decode(), signature, stamp, key)
    assert not checker.verify_signature(req.body.decode() + " ", signature, stamp, key)
    conn = await _connect(system, "sendgrid", signer.conn_secret)
    delivery = await accepted(system, conn, req.body, req.headers)
    assert delivery["event_id"] == "sendgrid:sg-evt-1" and delivery["event_type"] == "delivered"


async def test_box_sdk_validates_what_connects(system: System) -> None:
    signer = Signer(ENTRIES["box"])
    req = signer.request({"type": "webhook_event", "id": "evt-box-1", "trigger": "FILE.UPLOADED"},
                         headers={"box-signature-version": "1", "box-signature-algorithm": "HmacSHA256"})
    lower = {k.lower(): v for k, v in req.headers.items()}
    assert WebhooksManager.validate_message(req.body.decode(), lower, signer.conn_secret)
    assert not WebhooksManager.validate_message(req.body.decode(), lower, "another-primary-key")
    conn = await _connect(system, "box", signer.conn_secret)
    delivery = await accepted(system, conn, req.body, req.headers)
    assert delivery["event_id"] == "box:evt-box-1" and delivery["event_type"] == "FILE.UPLOADED"
    secondary = dict(req.headers)
    secondary["box-signature-secondary"] = secondary.pop("box-signature-primary")
    other = await _connect(system, "box", signer.conn_secret)  # the secondary key pasted as the secret
    await accepted(system, other, req.body, secondary)


@pytest.mark.parametrize("provider", sorted(SDK_PROVIDERS["svix"]))
async def test_svix_signs_for(system: System, provider: str) -> None:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    body = orjson.dumps({"type": "user.created", "data": {"id": "user_1"}}).decode()
    msg_id = f"msg_{uuid.uuid4().hex}"
    signature = svix.webhooks.Webhook(secret).sign(msg_id, datetime.now(tz=UTC), body)
    headers = {"svix-id": msg_id, "svix-timestamp": str(int(time.time())), "svix-signature": signature}
    conn = await _connect(system, provider, secret)
    delivery = await accepted(system, conn, body.encode(), headers)
    assert delivery["event_id"] == f"{provider}:{msg_id}"
    assert delivery["event_type"] == (None if provider == "stytch" else "user.created")


# Brex and Render sign as Standard Webhooks; neither has an SDK of its own that verifies, so their record is
# their documented scheme, and the Standard Webhooks library signs for them here as well.
STANDARD_SIGNERS = ("brex", "render")


@pytest.mark.parametrize("provider", STANDARD_SIGNERS)
async def test_standardwebhooks_signs_for(system: System, provider: str) -> None:
    signer = Signer(ENTRIES[provider])
    sdk_secret = signer.conn_secret
    body = orjson.dumps({"type": "order.created", "event_type": "order.created", "status": "succeeded"}).decode()
    msg_id, at = f"msg_{uuid.uuid4().hex}", datetime.now(tz=UTC)
    signature = standardwebhooks.Webhook(sdk_secret).sign(msg_id, at, body)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": signature}
    standardwebhooks.Webhook(sdk_secret).verify(body, headers)
    conn = await _connect(system, provider, signer.conn_secret)
    delivery = await accepted(system, conn, body.encode(), headers)
    assert delivery["event_id"] == f"{provider}:{msg_id}"


def _braintree_gateway(public: str, private: str) -> braintree.BraintreeGateway:
    config = braintree.Configuration(braintree.Environment.Sandbox, merchant_id="merchant-1", public_key=public,
                                     private_key=private)
    return braintree.BraintreeGateway(config)


async def test_braintree_sdk_sample_notification_and_challenge(system: System) -> None:
    public, private = "pub_" + secrets.token_hex(6), secrets.token_hex(16)
    gateway = _braintree_gateway(public, private)
    sample = gateway.webhook_testing.sample_notification(braintree.WebhookNotification.Kind.SubscriptionWentPastDue,
                                                         "sub-1")
    conn = await _connect(system, "braintree", f"{public}:{private}")
    form = urlencode(sample).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    delivery = await accepted(system, conn, form, headers)
    assert delivery["event_type"] == "subscription_went_past_due"
    # The check Braintree sends from the Control Panel is a test.
    check = gateway.webhook_testing.sample_notification(braintree.WebhookNotification.Kind.Check, "")
    other = await _connect(system, "braintree", f"{public}:{private}")
    assert (await accepted(system, other, urlencode(check).encode(), headers))["is_test"] is True
    # Another merchant's keys: refused.
    stranger = _braintree_gateway(public, secrets.token_hex(16)).webhook_testing.sample_notification(
        braintree.WebhookNotification.Kind.Check, "")
    third = await _connect(system, "braintree", f"{public}:{private}")
    await rejected(system, third, urlencode(stranger).encode(), headers, "signature_mismatch")
    # bt_challenge: our answer is the one the SDK computes.
    challenge = secrets.token_hex(10)
    fourth = await _connect(system, "braintree", f"{public}:{private}")
    status, reply = await deliver(system, fourth, b"", {}, method="GET", query=f"bt_challenge={challenge}")
    assert status == 200 and reply == gateway.webhook_notification.verify(challenge).encode()


def _adyen_item(key: str, psp: str, event: str = "AUTHORISATION") -> dict[str, Any]:
    item: dict[str, Any] = {
        "amount": {"currency": "EUR", "value": 1130}, "eventCode": event, "eventDate": "2024-01-01T12:00:00+01:00",
        "merchantAccountCode": "TestMerchant", "merchantReference": "order-7", "originalReference": "",
        "pspReference": psp, "reason": "", "success": "true", "additionalData": {},
    }
    item["additionalData"]["hmacSignature"] = Adyen.util.generate_notification_sig(item, key).decode()
    assert Adyen.util.is_valid_hmac_notification(item, key)
    return item


async def test_adyen_sdk_signs_and_we_answer_accepted(system: System) -> None:
    key = secrets.token_hex(32)
    body = orjson.dumps({"live": "false", "notificationItems": [
        {"NotificationRequestItem": _adyen_item(key, "PSP0001")},
        {"NotificationRequestItem": _adyen_item(key, "PSP0002", "CAPTURE")},
    ]})
    conn = await _connect(system, "adyen", key)
    status, reply = await deliver(system, conn, body, {"Content-Type": "application/json"})
    assert (status, reply) == (200, b"[accepted]")
    delivery = await connected(system, conn)
    assert delivery["event_id"] == "adyen:PSP0001" and delivery["is_test"] is True
    tampered = body.replace(b"1130", b"1")
    await rejected(system, await _connect(system, "adyen", key), tampered, {}, "signature_mismatch")
    # In another account: within this one, the key of the connections above would be named instead.
    stranger = await connection(system, "adyen", secret=secrets.token_hex(32), account_id="acct-adyen-other")
    await rejected(system, stranger, body, {}, "signature_mismatch")


def _contentful_headers(secret: str, url: str, body: bytes, skew_s: float = 0) -> dict[str, str]:
    """Signed as Contentful's request-verification docs describe: the canonical request is method, path,
    the signed headers (lower-case, sorted, 'name:value' joined by ';') and the body, one per line."""
    stamp = str(int((time.time() + skew_s) * 1000))
    signed = {"x-contentful-topic": "ContentManagement.Entry.publish",
              "x-contentful-timestamp": stamp}
    signed["x-contentful-signed-headers"] = ",".join(sorted([*signed, "x-contentful-signed-headers"]))
    header_text = ";".join(f"{k}:{signed[k]}" for k in sorted(signed))
    canonical = "\n".join(["POST", urlsplit(url).path, header_text, body.decode()])
    signature = hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    return {**{k.title(): v for k, v in signed.items()}, "x-contentful-signature": signature,
            "Content-Type": "application/vnd.contentful.management.v1+json"}


async def test_contentful_request_verification(system: System) -> None:
    secret = secrets.token_urlsafe(48)[:64]
    body = orjson.dumps({"sys": {"id": "entry-1", "type": "Entry"}, "fields": {"title": {"en-US": "Hello"}}})
    conn = await _connect(system, "contentful", secret)
    delivery = await accepted(system, conn, body, _contentful_headers(secret, conn["webhook_url"], body))
    assert delivery["event_id"] == "contentful:entry-1"
    assert delivery["event_type"] == "ContentManagement.Entry.publish"
    tampered = body.replace(b"Hello", b"Bye")
    for case, code in (("tampered", "signature_mismatch"), ("other secret", "signature_mismatch"),
                       ("stale", "timestamp_too_old")):
        fresh = await _connect(system, "contentful", secret)
        url = fresh["webhook_url"]
        if case == "tampered":
            data, headers = tampered, _contentful_headers(secret, url, body)
        elif case == "other secret":
            data, headers = body, _contentful_headers("x" * 64, url, body)
        else:
            data, headers = body, _contentful_headers(secret, url, body, skew_s=-4000)
        await rejected(system, fresh, data, headers, code)


async def test_workos_sdk_verifies_what_connects(system: System) -> None:
    signer = Signer(ENTRIES["workos"])
    req = signer.request({"id": "event_01HW", "event": "user.created", "data": {"id": "user_1"}})
    stamp, signature = (part.split("=", 1)[1] for part in req.headers["WorkOS-Signature"].split(","))
    header = f"t={stamp}, v1={signature}"  # as WorkOS writes it (the SDK splits on ", ")
    Webhooks(client=None).verify_header(event_body=req.body, event_signature=header,  # type: ignore[arg-type]
                                        secret=signer.conn_secret)
    with pytest.raises(ValueError, match="does not match"):
        Webhooks(client=None).verify_header(  # type: ignore[arg-type]
            event_body=req.body + b" ", event_signature=header, secret=signer.conn_secret)
    conn = await _connect(system, "workos", signer.conn_secret)
    delivery = await accepted(system, conn, req.body, {**req.headers, "WorkOS-Signature": header})
    assert delivery["event_id"] == "workos:event_01HW" and delivery["event_type"] == "user.created"


async def test_vonage_sdk_verifies_what_connects(system: System) -> None:
    signer = Signer(ENTRIES["vonage"])
    req = signer.request({"message_uuid": "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab", "status": "delivered"})
    token = req.headers["Authorization"].removeprefix("Bearer ")
    assert verify_signature(token, signer.conn_secret) is True
    assert verify_signature(token, "another-signature-secret-of-32-bytes-or-more") is False
    conn = await _connect(system, "vonage", signer.conn_secret)
    delivery = await accepted(system, conn, req.body, req.headers)
    assert delivery["event_id"] == "vonage:aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab"
    assert delivery["event_type"] == "delivered"


async def test_telnyx_sdk_verifies_what_connects(system: System) -> None:
    signer = Signer(ENTRIES["telnyx"])
    req = signer.request({"data": {"id": "evt-telnyx-1", "event_type": "message.received", "payload": {}}})
    verify_webhook_signature(req.body.decode(), req.headers, signer.conn_secret)
    with pytest.raises(WebhookVerificationError):
        verify_webhook_signature(req.body.decode() + " ", req.headers, signer.conn_secret)
    conn = await _connect(system, "telnyx", signer.conn_secret)
    delivery = await accepted(system, conn, req.body, req.headers)
    assert delivery["event_id"] == "telnyx:evt-telnyx-1" and delivery["event_type"] == "message.received"
