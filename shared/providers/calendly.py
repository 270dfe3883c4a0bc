"""Calendly: ``Calendly-Webhook-Signature: t=<unix s>,v1=<hex>``.

``v1`` is hex HMAC-SHA256(webhook signing key, ``"{t}.{raw body}"``); Calendly's docs suggest a 3 minute
tolerance on ``t`` against replays, which is what this adapter uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from shared.providers import core
from shared.providers.adapter_kit import (
    PastedSecretProvider,
    hex_candidates,
    key_values,
    one_value,
    random_secret,
    values_of,
)
from shared.providers.base import InboundRequest, ProviderInfo, Verified
from shared.providers.events import body_fingerprint, dig, json_body

SIGNATURE = "Calendly-Webhook-Signature"


class Calendly(PastedSecretProvider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="calendly",
        title="Calendly",
        headers=(SIGNATURE,),
        scheme="t=<unix s>,v1=<hex HMAC-SHA256(signing key, '{t}.{body}')>; 180 s tolerance",
        handshake=None,
        secret_format="the webhook signing key: the signing_key you set on the subscription, or the OAuth "
        "app's webhook signing key",
        settings={},
        test_instructions="Book (or cancel) a meeting on an event type the subscription covers.",
    )
    tolerance_s: ClassVar[int | None] = 180

    def generate_secret(self) -> str:
        return random_secret()

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        pairs = key_values(core.require_header(request, SIGNATURE), SIGNATURE)
        raw_ts = one_value(pairs, "t", SIGNATURE)
        timestamp = core.parse_timestamp(raw_ts, SIGNATURE)
        one_value(pairs, "v1", SIGNATURE)  # a header without v1 is malformed, not a mismatch
        candidates = hex_candidates(values_of(pairs, "v1"), SIGNATURE)
        expected = core.hmac_digest(secret.encode(), f"{raw_ts}.".encode() + request.body)
        if not core.any_matches(expected, candidates):
            raise core.mismatch()
        core.check_tolerance(timestamp, now, self.tolerance_s or 180)
        data = json_body(request.body)
        uri = dig(data, "payload", "uri")
        return Verified(
            event_id=f"calendly:{dig(data, 'event')}:{uri}" if uri else body_fingerprint(request.body),
            event_type=dig(data, "event"),
        )
