"""Typeform: ``Typeform-Signature: sha256=<base64 HMAC-SHA256(webhook secret, raw body)>``.

The secret is one the user chooses and types into the form's webhook settings, so a generated one is
offered at creation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from shared.providers import core
from shared.providers.adapter_kit import PastedSecretProvider, random_secret
from shared.providers.base import InboundRequest, ProviderInfo, Verified
from shared.providers.events import body_fingerprint, dig, json_body

SIGNATURE = "Typeform-Signature"


class Typeform(PastedSecretProvider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="typeform",
        title="Typeform",
        headers=(SIGNATURE,),
        scheme="'sha256=' + base64 HMAC-SHA256(secret, raw body)",
        handshake=None,
        secret_format="any string you choose; paste the generated one into the webhook's Secret field",
        settings={},
        test_instructions="Connect -> Webhooks -> your webhook -> View deliveries -> Send test request.",
    )

    def generate_secret(self) -> str:
        return random_secret()

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        value = core.after_prefix(core.require_header(request, SIGNATURE), "sha256=", SIGNATURE)
        given = core.decode_b64(value, f"{SIGNATURE} value")
        if not core.constant_time_equal(core.hmac_digest(secret.encode(), request.body), given):
            raise core.mismatch()
        data = json_body(request.body)
        event_id = dig(data, "event_id")
        return Verified(
            event_id=f"typeform:{event_id}" if event_id else body_fingerprint(request.body),
            event_type=dig(data, "event_type"),
        )
