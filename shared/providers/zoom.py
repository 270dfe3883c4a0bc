"""Zoom: ``x-zm-signature: v0=<hex HMAC-SHA256(secret token, "v0:{timestamp}:{body}")>``.

``x-zm-request-timestamp`` is signed; we allow 300 s. Zoom checks the endpoint with a signed
``endpoint.url_validation`` event (and again every 72 hours), which must be answered within 3 s with
``{"plainToken": <token>, "encryptedToken": <hex HMAC-SHA256(secret token, token)>}``: answered at once,
after the signature is checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from shared.providers import core
from shared.providers.adapter_kit import PastedSecretProvider, echo_token, token_id
from shared.providers.base import HandshakeReply, InboundRequest, Proof, ProviderInfo, Verified
from shared.providers.events import body_fingerprint, dig, json_body
from shared.providers.slack import verify_v0

SIGNATURE = "x-zm-signature"
TIMESTAMP = "x-zm-request-timestamp"
VALIDATION = "endpoint.url_validation"


class Zoom(PastedSecretProvider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="zoom",
        title="Zoom",
        headers=(SIGNATURE, TIMESTAMP),
        scheme="'v0=' + hex HMAC-SHA256(secret token, 'v0:{timestamp}:{body}'); 300 s",
        handshake="endpoint.url_validation: answered at once with plainToken and encryptedToken",
        secret_format="the app's Secret Token (Zoom App Marketplace -> your app -> Features -> Access)",
        settings={},
        test_instructions="Event Subscriptions -> paste the webhook URL as the endpoint -> Validate.",
    )
    handshake_proof: ClassVar[Proof] = "secret"  # endpoint.url_validation is signed
    tolerance_s: ClassVar[int | None] = 300

    def generate_secret(self) -> str:
        return core.SECRET_PENDING  # Zoom issues the secret token

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        verify_v0(request, secret, now, (SIGNATURE, TIMESTAMP), self.tolerance_s or 300)
        data = json_body(request.body)
        event = dig(data, "event")
        if event == VALIDATION:
            plain = echo_token(dig(data, "payload", "plainToken"), "plainToken")
            encrypted = core.hmac_digest(secret.encode(), plain.encode()).hex()
            body = orjson.dumps({"plainToken": plain, "encryptedToken": encrypted})
            return Verified(
                event_id=token_id("zoom-validation", plain),
                event_type=VALIDATION,
                is_test=True,
                handshake=True,
                reply=HandshakeReply(body=body, content_type="application/json"),
            )
        return Verified(event_id=body_fingerprint(request.body), event_type=event)
