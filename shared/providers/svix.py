"""Svix: the Standard Webhooks scheme under ``svix-id`` / ``svix-timestamp`` / ``svix-signature``.

Svix issues the ``whsec_`` secret (Dashboard -> Endpoint -> Signing Secret) or, for asymmetric
endpoints, a ``whpk_`` public key; ``webhook-*`` header names are accepted too.
"""

from __future__ import annotations

from typing import ClassVar

from shared.providers import core
from shared.providers.base import ProviderInfo
from shared.providers.standard_webhooks import StandardWebhooks


class Svix(StandardWebhooks):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="svix",
        title="Svix",
        headers=("svix-id", "svix-timestamp", "svix-signature"),
        scheme="v1: base64 HMAC-SHA256 over '{id}.{timestamp}.{body}', key = base64 after whsec_; "
        "v1a: base64 ed25519 over the same with a whpk_ public key; 300 s",
        handshake=None,
        secret_format="the endpoint's Signing Secret (whsec_...) or whpk_ public key, as Svix shows it",
        settings={},
        test_instructions="Svix App Portal -> Endpoints -> your endpoint -> Testing -> Send Example.",
    )
    header_prefixes: ClassVar[tuple[str, ...]] = ("svix-", "webhook-")

    def generate_secret(self) -> str:
        # Svix shows the secret once the endpoint exists; the connection waits for it.
        return core.SECRET_PENDING
