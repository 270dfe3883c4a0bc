"""Slack: ``X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret, "v0:{timestamp}:{body}")>``.

``X-Slack-Request-Timestamp`` is signed and must be within 300 s (Slack's own SDK tolerance). The Events
API's ``url_verification`` request is signed too: once the signature checks out it is answered at once
with its ``challenge`` (text/plain) and counts as the handshake. Zoom signs the same way (``v0``), so
the scheme lives here as ``verify_v0``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import parse_qs

from shared.providers import core
from shared.providers.adapter_kit import PastedSecretProvider, echo_token, token_id
from shared.providers.base import HandshakeReply, InboundRequest, Proof, ProviderInfo, Verified
from shared.providers.events import body_fingerprint, dig, json_body

SIGNATURE = "X-Slack-Signature"
TIMESTAMP = "X-Slack-Request-Timestamp"
TOLERANCE_S = 300


def verify_v0(
    request: InboundRequest, secret: str, now: float, headers: tuple[str, str], tolerance_s: float
) -> None:
    """Check ``v0=<hex HMAC-SHA256(secret, 'v0:{timestamp}:{body}')>`` with a signed timestamp."""
    signature_header, timestamp_header = headers
    raw_sig = core.require_header(request, signature_header)
    raw_ts = core.require_header(request, timestamp_header)
    timestamp = core.parse_timestamp(raw_ts, timestamp_header)
    expected = core.hmac_digest(secret.encode(), b"v0:" + raw_ts.encode() + b":" + request.body)
    core.check_hex(expected, raw_sig, "v0=", signature_header)
    core.check_tolerance(timestamp, now, tolerance_s)  # signed, so a replay or a skewed clock


def _form_payload(body: bytes) -> Any:
    """Interactivity posts ``payload=<json>``; slash commands post plain form fields."""
    try:
        form = parse_qs(body.decode(), strict_parsing=False)
    except UnicodeDecodeError:
        return None
    if "payload" in form:
        return json_body(form["payload"][0].encode())
    return {"type": "slash_command", "command": form["command"][0]} if "command" in form else None


class Slack(PastedSecretProvider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="slack",
        title="Slack",
        headers=(SIGNATURE, TIMESTAMP),
        scheme="'v0=' + hex HMAC-SHA256(signing secret, 'v0:{timestamp}:{body}'); 300 s",
        handshake="url_verification: answered at once with the challenge",
        secret_format="the app's Signing Secret (api.slack.com/apps -> your app -> Basic Information -> "
        "App Credentials)",
        settings={},
        test_instructions="Event Subscriptions -> Request URL: paste the webhook URL; Slack sends "
        "url_verification at once.",
    )
    handshake_proof: ClassVar[Proof] = "secret"  # url_verification is signed
    tolerance_s: ClassVar[int | None] = TOLERANCE_S

    def generate_secret(self) -> str:
        return core.SECRET_PENDING  # Slack issues the signing secret

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        verify_v0(request, secret, now, (SIGNATURE, TIMESTAMP), self.tolerance_s or TOLERANCE_S)
        data = json_body(request.body)
        if isinstance(data, dict) and data.get("type") == "url_verification":
            challenge = echo_token(dig(data, "challenge"), "challenge")
            return Verified(
                event_id=token_id("slack-challenge", challenge),
                event_type="url_verification",
                is_test=True,
                handshake=True,
                reply=HandshakeReply(body=challenge.encode(), content_type="text/plain"),
            )
        if data is None:
            data = _form_payload(request.body)
        event_id = dig(data, "event_id")
        return Verified(
            event_id=f"slack:{event_id}" if event_id else body_fingerprint(request.body),
            event_type=dig(data, "event", "type") or dig(data, "type"),
        )
