"""Square: ``x-square-hmacsha256-signature`` is base64 HMAC-SHA256(signature key, notification URL + body).

The notification URL is the connection's ``webhook_url`` exactly as pasted in Square's dashboard (the
receiver's ``InboundRequest.url``). Subscriptions made before 2021 also send the older
``x-square-signature`` (HMAC-SHA1, same signed string); it is accepted when the SHA-256 header is absent.
``webhooks.test_notification`` (the dashboard's "Send test event") counts as a test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from shared.providers import core
from shared.providers.adapter_kit import IssuedSecretProvider
from shared.providers.base import InboundRequest, ProviderInfo, Verified
from shared.providers.events import body_fingerprint, dig, json_body

SIGNATURE = "x-square-hmacsha256-signature"
LEGACY_SIGNATURE = "x-square-signature"
TEST_EVENT = "webhooks.test_notification"


class Square(IssuedSecretProvider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="square",
        title="Square",
        headers=(SIGNATURE, LEGACY_SIGNATURE),
        scheme="base64 HMAC-SHA256(signature key, notification URL + raw body); legacy HMAC-SHA1 "
        "x-square-signature accepted",
        handshake=None,
        secret_format="the subscription's signature key (Developer Console -> Webhooks -> Subscriptions "
        "-> your subscription -> Signature key)",
        settings={},
        test_instructions="Developer Console -> Webhooks -> Subscriptions -> your subscription -> "
        "Send test event (webhooks.test_notification).",
    )

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        signed = request.url.encode() + request.body
        header, algorithm = _signature_header(request)
        given = core.decode_b64(core.require_header(request, header), f"{header} value")
        expected = core.hmac_digest(secret.encode(), signed, algorithm)
        if not core.constant_time_equal(expected, given):
            raise core.mismatch(
                "Square also signs the notification URL: it must be exactly this connection's webhook URL."
            )
        data = json_body(request.body)
        event_type = dig(data, "type")
        event_id = dig(data, "event_id")
        return Verified(
            event_id=f"square:{event_id}" if event_id else body_fingerprint(request.body),
            event_type=event_type,
            is_test=event_type == TEST_EVENT,
        )


def _signature_header(request: InboundRequest) -> tuple[str, core.Algorithm]:
    """The SHA-256 header, or the legacy SHA-1 one when it is the only one sent."""
    if request.headers.get(SIGNATURE) is None and request.headers.get(LEGACY_SIGNATURE):
        return LEGACY_SIGNATURE, "sha1"
    return SIGNATURE, "sha256"
