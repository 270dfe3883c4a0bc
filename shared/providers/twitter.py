"""X (Twitter) Account Activity API.

Challenge-Response Check: X sends ``GET <url>?crc_token=<token>`` when the webhook is registered and
about hourly after; the answer, within 3 s, is ``{"response_token": "sha256=" + base64
HMAC-SHA256(consumer secret, crc_token)}``. Events are POSTs with ``x-twitter-webhooks-signature:
sha256=<base64 HMAC-SHA256(consumer secret, raw body)>``. The CRC can only be answered with the current
secret: X holds one consumer secret at a time.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from shared.errors import VerificationError
from shared.providers import core
from shared.providers.adapter_kit import IssuedSecretProvider, echo_token, token_id
from shared.providers.base import HandshakeReply, InboundRequest, Proof, ProviderInfo, Verified
from shared.providers.events import body_fingerprint, json_body

SIGNATURE = "x-twitter-webhooks-signature"


def crc_response(secret: str, crc_token: str) -> str:
    digest = core.hmac_digest(secret.encode(), crc_token.encode())
    return "sha256=" + base64.b64encode(digest).decode()


class Twitter(IssuedSecretProvider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="twitter",
        title="X (Twitter) Account Activity",
        headers=(SIGNATURE,),
        scheme="'sha256=' + base64 HMAC-SHA256(consumer secret, raw body)",
        handshake="GET ?crc_token=<token>: answered with {\"response_token\": \"sha256=\" + base64 "
        "HMAC-SHA256(consumer secret, crc_token)}",
        secret_format="the app's API key secret (consumer secret; Developer Portal -> your app -> Keys "
        "and tokens)",
        settings={},
        test_instructions="Register the webhook URL (POST /2/webhooks, or trigger a CRC with PUT "
        "/2/webhooks/:id), then cause an event (e.g. a post by a subscribed account): the first signed event "
        "verifies the connection (the CRC only shows the URL is reachable).",
    )
    handshake_proof: ClassVar[Proof] = "nothing"  # anyone can send a crc_token; only our answer is keyed
    methods: ClassVar[tuple[str, ...]] = ("GET", "POST")

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        if request.method == "GET":
            return _crc(request, secret)
        if not isinstance(json_body(request.body), dict):
            # Every Account Activity event is a JSON object, and no CRC token can be one: so the CRC
            # answer (HMAC of the token under the same key) can never be replayed as an event signature.
            raise VerificationError(core.MALFORMED_BODY, "An X Account Activity event must be a JSON object.")
        value = core.after_prefix(core.require_header(request, SIGNATURE), "sha256=", SIGNATURE)
        given = core.decode_b64(value, f"{SIGNATURE} value")
        if not core.constant_time_equal(core.hmac_digest(secret.encode(), request.body), given):
            raise core.mismatch("X signs with the app's consumer (API key) secret, not an access token.")
        return Verified(event_id=body_fingerprint(request.body), event_type=_event_type(request.body))


def _crc(request: InboundRequest, secret: str) -> Verified:
    token = echo_token(request.query.get("crc_token"), "crc_token query parameter")
    if not secret:  # the answer is keyed by the consumer secret: without it any answer would be wrong
        raise core.secret_not_set()
    body = orjson.dumps({"response_token": crc_response(secret, token)})
    return Verified(
        event_id=token_id("twitter-crc", token),
        event_type="crc",
        is_test=True,
        handshake=True,
        reachable_only=True,
        reply=HandshakeReply(body=body, content_type="application/json"),
    )


def _event_type(body: bytes) -> str | None:
    """Account Activity bodies name their event by a ``*_events`` (or ``*_event``) key."""
    data = json_body(body)
    if not isinstance(data, dict):
        return None
    return next((key for key in data if key.endswith(("_events", "_event"))), None)
