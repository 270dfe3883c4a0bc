"""Rules every adapter follows, checked without the system: an empty secret never verifies, timestamps
are judged only on signed requests, Twilio's URL forms, and diagnosis messages never hold a secret."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
import stripe
from twilio.request_validator import RequestValidator

from shared.errors import VerificationError
from shared.providers import PROVIDERS
from shared.providers.base import InboundRequest
from shared.providers.rotation import verify_with_rotation
from shared.providers.twilio import Twilio, url_forms

BODY = b'{"id":"evt_1","type":"x"}'


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_a_request_signed_with_an_empty_key_never_verifies(name: str) -> None:
    """Connections waiting for their secret hold ''; HMAC with an empty key must not let anyone in."""
    ts = str(int(time.time()))
    empty_sig = hmac.new(b"", BODY, hashlib.sha256)
    headers = {
        "X-Hub-Signature-256": "sha256=" + empty_sig.hexdigest(),
        "X-Signature-256": "sha256=" + empty_sig.hexdigest(),
        "Stripe-Signature": stripe.WebhookSignature.generate_signature_header(BODY.decode(), "", int(ts)),
        "X-Slack-Signature": "v0=" + hmac.new(b"", f"v0:{ts}:".encode() + BODY, hashlib.sha256).hexdigest(),
        "X-Slack-Request-Timestamp": ts,
    }
    request = InboundRequest("POST", "https://example.test/hooks/1", headers, {}, BODY)
    with pytest.raises(VerificationError) as caught:
        verify_with_rotation(PROVIDERS[name], request, ("", None), {}, time.time())
    assert caught.value.code == "secret_not_set"


def test_a_stale_request_with_a_wrong_secret_is_a_mismatch_not_a_replay() -> None:
    old = int(time.time()) - 3600
    header = stripe.WebhookSignature.generate_signature_header(BODY.decode(), "whsec_other", old)
    request = InboundRequest("POST", "u", {"Stripe-Signature": header}, {}, BODY)
    with pytest.raises(VerificationError) as caught:
        verify_with_rotation(PROVIDERS["stripe"], request, ("whsec_mine", None), {}, time.time())
    assert caught.value.code == "signature_mismatch"
    header = stripe.WebhookSignature.generate_signature_header(BODY.decode(), "whsec_mine", old)
    request = InboundRequest("POST", "u", {"Stripe-Signature": header}, {}, BODY)
    with pytest.raises(VerificationError) as caught:
        verify_with_rotation(PROVIDERS["stripe"], request, ("whsec_mine", None), {}, time.time())
    assert caught.value.code == "timestamp_too_old"
    assert caught.value.detail["skew_s"] >= 3600


@pytest.mark.parametrize(
    ("url", "other"),
    [
        ("https://h.example/hooks/1?a=1", "https://h.example:443/hooks/1?a=1"),
        ("http://h.example:80/hooks/1", "http://h.example/hooks/1"),
    ],
)
def test_twilio_url_with_and_without_the_default_port(url: str, other: str) -> None:
    assert url_forms(url) == [url, other]
    params = {"CallSid": "CA1", "Digits": "1"}
    signature = RequestValidator("tok").compute_signature(other, params)
    body = "&".join(f"{k}={v}" for k, v in params.items()).encode()
    Twilio().verify(InboundRequest("POST", url, {"X-Twilio-Signature": signature}, {}, body), "tok", {}, 0)


def test_twilio_get_webhook_signs_the_url_alone() -> None:
    url = "https://h.example/hooks/1?CallSid=CA1&From=%2B1555"
    signature = RequestValidator("tok").compute_signature(url, {})
    Twilio().verify(InboundRequest("GET", url, {"X-Twilio-Signature": signature}, {}, b""), "tok", {}, 0)


def test_twilio_hmac_sha256_signature_setting() -> None:
    url = "https://h.example/hooks/1"
    signature = RequestValidator("tok").compute_signature(url, {"A": "1"}, "HMAC_SHA256")
    headers = {"X-Twilio-Signature": signature, "X-Twilio-Webhooks-Signature-Settings": "algorithm=HMAC_SHA256"}
    Twilio().verify(InboundRequest("POST", url, headers, {}, b"A=1"), "tok", {}, 0)


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_diagnosis_messages_never_contain_the_secret(name: str) -> None:
    secret = "whsec_" + "c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1sZWFr"
    retired = "whsec_" + "cmV0aXJlZC1zZWNyZXQtbmV2ZXItc2hvd24h"
    headers = {"Stripe-Signature": stripe.WebhookSignature.generate_signature_header(BODY.decode(), secret),
               "X-GitHub-Event": "ping", "webhook-id": "msg_1"}
    request = InboundRequest("POST", "https://example.test/hooks/1", headers, {}, BODY)
    try:
        verify_with_rotation(PROVIDERS[name], request, (secret, None), {}, time.time(), retired=retired)
    except VerificationError as exc:
        for value in (secret, retired, secret.removeprefix("whsec_")):
            assert value not in exc.message and value not in str(exc.detail)


def test_a_stale_request_signed_with_the_previous_secret_is_a_replay() -> None:
    old = int(time.time()) - 3600
    header = stripe.WebhookSignature.generate_signature_header(BODY.decode(), "whsec_previous", old)
    request = InboundRequest("POST", "u", {"Stripe-Signature": header}, {}, BODY)
    with pytest.raises(VerificationError) as caught:
        verify_with_rotation(PROVIDERS["stripe"], request, ("whsec_current", "whsec_previous"), {}, time.time())
    assert caught.value.code == "timestamp_too_old"
    fresh = stripe.WebhookSignature.generate_signature_header(BODY.decode(), "whsec_previous")
    request = InboundRequest("POST", "u", {"Stripe-Signature": fresh}, {}, BODY)
    verified = verify_with_rotation(PROVIDERS["stripe"], request, ("whsec_current", "whsec_previous"), {}, time.time())
    assert verified.secret_slot == "previous"
