"""HubSpot, signature v3.

``X-HubSpot-Signature-v3`` is base64 HMAC-SHA256 (key: the app's client secret as UTF-8) over
``method + URI + body + timestamp``; ``X-HubSpot-Request-Timestamp`` is in *milliseconds* and may be at
most 5 minutes old. HubSpot signs the URI with a few percent-encoded characters decoded (its docs list
them), so both the URI as received and that decoded form are tried.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from shared.providers import core
from shared.providers.adapter_kit import IssuedSecretProvider
from shared.providers.base import InboundRequest, ProviderInfo, Verified
from shared.providers.events import body_fingerprint, json_body

SIGNATURE = "X-HubSpot-Signature-v3"
TIMESTAMP = "X-HubSpot-Request-Timestamp"
# The characters HubSpot's v3 docs say to decode in the URI before signing.
DECODED = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
    "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip


def hubspot_uri(url: str) -> str:
    for encoded, char in DECODED.items():
        url = url.replace(encoded, char).replace(encoded.lower(), char)
    return url


class HubSpot(IssuedSecretProvider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="hubspot",
        title="HubSpot",
        headers=(SIGNATURE, TIMESTAMP),
        scheme="v3: base64 HMAC-SHA256(client secret, method + URI + body + timestamp); timestamp in "
        "milliseconds, 300 s tolerance",
        handshake=None,
        secret_format="the app's client secret (your app -> Auth -> Client secret)",
        settings={},
        test_instructions="In the app's Webhooks settings, subscribe to an event and use 'Test' "
        "(or create a contact in a test portal).",
    )
    tolerance_s: ClassVar[int | None] = 300

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        given = core.decode_b64(core.require_header(request, SIGNATURE), f"{SIGNATURE} value")
        raw_ts = core.require_header(request, TIMESTAMP)
        timestamp = core.parse_timestamp(raw_ts, TIMESTAMP, millis=True)
        candidates = [
            core.hmac_digest(
                secret.encode(), f"{request.method}{uri}".encode() + request.body + raw_ts.encode()
            )
            for uri in dict.fromkeys((request.url, hubspot_uri(request.url)))
        ]
        if not core.any_matches(given, candidates):
            raise core.mismatch("HubSpot signs with the app's client secret, not a private-app token.")
        core.check_tolerance(timestamp, now, self.tolerance_s or 300)
        event_id, event_type = _event_of(request.body)
        return Verified(event_id=event_id, event_type=event_type)


def _event_of(body: bytes) -> tuple[str, str | None]:
    """HubSpot posts a JSON array of events; one event keeps its id, a batch is identified by its bytes."""
    data = json_body(body)
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        return body_fingerprint(body), None
    first = data[0]
    kind = str(first["subscriptionType"])[:200] if first.get("subscriptionType") else None
    if len(data) == 1 and first.get("eventId") is not None:
        return f"hubspot:{first['eventId']}", kind
    return body_fingerprint(body), kind
