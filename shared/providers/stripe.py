"""Stripe: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...][,v0=...]``.

The signed payload is ``{t}.{raw body}``; the key is the endpoint's whole ``whsec_...`` string taken as
UTF-8 (not base64-decoded, unlike Standard Webhooks); any ``v1`` entry may match (Stripe sends two
while a secret is being rolled). Tolerance 300 s, as in Stripe's own libraries. Events with
``"livemode": false`` come from test mode (or the dashboard's "Send test webhook") and count as tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from shared.errors import SettingsError, VerificationError
from shared.providers import core
from shared.providers.adapter_kit import key_values, one_value, pasted_secret, values_of
from shared.providers.base import InboundRequest, Provider, ProviderInfo, Verified
from shared.providers.events import body_fingerprint, dig, json_body

HEADER = "Stripe-Signature"


class Stripe(Provider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="stripe",
        title="Stripe",
        headers=(HEADER,),
        scheme="hex HMAC-SHA256 over '{t}.{body}', key = the whole whsec_ string as UTF-8; 300 s",
        handshake=None,
        secret_format="the endpoint's signing secret, whsec_... (Developers -> Webhooks -> your "
        "endpoint -> Signing secret -> Reveal)",
        settings={},
        test_instructions="Stripe Dashboard (test mode) -> Developers -> Webhooks -> your endpoint -> "
        "Send test webhook, or `stripe trigger payment_intent.succeeded`.",
    )
    tolerance_s: ClassVar[int | None] = 300

    def generate_secret(self) -> str:
        return core.SECRET_PENDING  # Stripe shows the secret once the endpoint exists

    def validate_secret(self, secret: str) -> str:
        value = pasted_secret(secret)
        if not value.startswith("whsec_"):
            raise SettingsError(
                "a Stripe signing secret starts with whsec_; copy it whole from the endpoint's page",
                field="secret",
            )
        return value

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        pairs = key_values(core.require_header(request, HEADER), HEADER)
        raw_ts = one_value(pairs, "t", HEADER)
        timestamp = core.parse_timestamp(raw_ts, f"{HEADER} t=")
        signatures = [core.decode_hex(v, f"{HEADER} v1 value") for v in values_of(pairs, "v1")]
        if not signatures:
            raise VerificationError(
                core.MALFORMED_SIGNATURE, f"The {HEADER} header has no v1= signature.", header=HEADER
            )
        expected = core.hmac_digest(secret.encode(), raw_ts.encode() + b"." + request.body)
        if not core.any_matches(expected, signatures):
            raise core.mismatch("Test mode and live mode endpoints have different secrets.")
        core.check_tolerance(timestamp, now, self.tolerance_s or 300)  # signed, so a replay or a skew
        data = json_body(request.body)
        return Verified(
            event_id=dig(data, "id") or body_fingerprint(request.body),
            event_type=dig(data, "type"),
            is_test=isinstance(data, dict) and data.get("livemode") is False,
        )
