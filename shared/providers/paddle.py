"""Paddle Billing: ``Paddle-Signature: ts=<unix s>;h1=<hex>``.

``h1`` is hex HMAC-SHA256(notification destination's secret key, ``"{ts}:{raw body}"``); during a secret
rotation Paddle sends several ``h1`` values. Paddle's SDKs allow 5 s between ``ts`` and the receiver's
clock by default; this adapter follows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from shared.providers import core
from shared.providers.adapter_kit import IssuedSecretProvider, hex_candidates, key_values, one_value, values_of
from shared.providers.base import InboundRequest, ProviderInfo, Verified
from shared.providers.events import body_fingerprint, dig, json_body

SIGNATURE = "Paddle-Signature"


class Paddle(IssuedSecretProvider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="paddle",
        title="Paddle Billing",
        headers=(SIGNATURE,),
        scheme="ts=<unix s>;h1=<hex HMAC-SHA256(secret key, '{ts}:{body}')>; 5 s tolerance",
        handshake=None,
        secret_format="the notification destination's secret key (pdl_ntfset_...; Developer Tools -> "
        "Notifications -> your destination)",
        settings={},
        test_instructions="Developer Tools -> Simulations: send a simulated event to the destination.",
    )
    tolerance_s: ClassVar[int | None] = 5

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        pairs = key_values(core.require_header(request, SIGNATURE), SIGNATURE, ";")
        raw_ts = one_value(pairs, "ts", SIGNATURE)
        timestamp = core.parse_timestamp(raw_ts, SIGNATURE)
        one_value(pairs, "h1", SIGNATURE)
        candidates = hex_candidates(values_of(pairs, "h1"), SIGNATURE)
        expected = core.hmac_digest(secret.encode(), f"{raw_ts}:".encode() + request.body)
        if not core.any_matches(expected, candidates):
            raise core.mismatch()
        core.check_tolerance(timestamp, now, self.tolerance_s or 5)
        data = json_body(request.body)
        event_id = dig(data, "event_id")
        return Verified(
            event_id=f"paddle:{event_id}" if event_id else body_fingerprint(request.body),
            event_type=dig(data, "event_type"),
        )
