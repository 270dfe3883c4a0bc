"""PagerDuty v3 webhooks: ``X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]``.

Each ``v1`` entry is hex HMAC-SHA256(subscription secret, raw body); several are sent while PagerDuty
rotates a secret, and any one matching is enough. ``pagey.ping`` (sent by "Send test event") is a test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from shared.errors import VerificationError
from shared.providers import core
from shared.providers.adapter_kit import IssuedSecretProvider, hex_candidates
from shared.providers.base import InboundRequest, ProviderInfo, Verified
from shared.providers.events import body_fingerprint, dig, json_body

SIGNATURE = "X-PagerDuty-Signature"
TEST_EVENT = "pagey.ping"


class PagerDuty(IssuedSecretProvider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="pagerduty",
        title="PagerDuty",
        headers=(SIGNATURE,),
        scheme="comma-separated 'v1=' + hex HMAC-SHA256(secret, raw body); any entry may match",
        handshake=None,
        secret_format="the webhook subscription's secret (shown once when the subscription is created)",
        settings={},
        test_instructions="Integrations -> Generic Webhooks (v3) -> your subscription -> Send Test Event "
        "(pagey.ping).",
    )

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        candidates = _signatures(core.require_header(request, SIGNATURE))
        if not core.any_matches(core.hmac_digest(secret.encode(), request.body), candidates):
            raise core.mismatch()
        data = json_body(request.body)
        event_type = dig(data, "event", "event_type")
        event_id = dig(data, "event", "id")
        return Verified(
            event_id=f"pagerduty:{event_id}" if event_id else body_fingerprint(request.body),
            event_type=event_type,
            is_test=event_type == TEST_EVENT,
        )


def _signatures(raw: str) -> list[bytes]:
    values = []
    for entry in raw.split(","):
        version, sep, value = entry.strip().partition("=")
        if sep and version == "v1" and value.strip():
            values.append(value.strip())
    if not values:
        raise VerificationError(
            core.MALFORMED_SIGNATURE, f"The {SIGNATURE} header has no 'v1=<hex>' entry.", header=SIGNATURE
        )
    return hex_candidates(values, SIGNATURE)
