"""Shopify: ``X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256(client secret, raw body)>``.

Event-bus deliveries send the same headers without the ``X-`` prefix (``shopify-hmac-sha256``); both are
accepted. ``X-Shopify-Webhook-Id`` is Shopify's idempotency key (``X-Shopify-Event-Id`` as fallback),
``X-Shopify-Topic`` the event type; "Send test notification" from the admin carries
``X-Shopify-Test: true`` and is marked as a test. No timestamp is signed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from shared.providers import core
from shared.providers.adapter_kit import PastedSecretProvider
from shared.providers.base import InboundRequest, ProviderInfo, Verified
from shared.providers.events import body_fingerprint

SIGNATURE = ("X-Shopify-Hmac-Sha256", "shopify-hmac-sha256")


def _first(request: InboundRequest, suffix: str) -> str | None:
    return request.headers.get(f"X-Shopify-{suffix}") or request.headers.get(f"shopify-{suffix}")


class Shopify(PastedSecretProvider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="shopify",
        title="Shopify",
        headers=("X-Shopify-Hmac-Sha256", "X-Shopify-Topic", "X-Shopify-Webhook-Id", "shopify-hmac-sha256"),
        scheme="base64 HMAC-SHA256(client secret, raw body)",
        handshake=None,
        secret_format="the app's Client secret (Partner Dashboard -> Apps -> your app -> Client "
        "credentials), or for store-admin webhooks the key shown under Settings -> Notifications -> Webhooks",
        settings={},
        test_instructions="Shopify admin -> Settings -> Notifications -> Webhooks -> Send test "
        "notification, or `shopify app webhook trigger`.",
    )

    def generate_secret(self) -> str:
        return core.SECRET_PENDING  # Shopify issues the secret

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        raw = core.require_header(request, *SIGNATURE)
        given = core.decode_b64(raw, f"{SIGNATURE[0]} value")
        if not core.constant_time_equal(core.hmac_digest(secret.encode(), request.body), given):
            raise core.mismatch("Use the app's client secret, not its API key or an access token.")
        event_id = _first(request, "Webhook-Id") or _first(request, "Event-Id")
        return Verified(
            event_id=f"shopify:{event_id}" if event_id else body_fingerprint(request.body),
            fingerprint=body_fingerprint(request.body) if event_id else None,  # the header is unsigned
            event_type=_first(request, "Topic"),
            is_test=(_first(request, "Test") or "").lower() == "true",
        )
