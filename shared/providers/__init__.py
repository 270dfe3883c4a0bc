"""Provider registry: name -> adapter. Add a provider by adding a module and one line below."""

from __future__ import annotations

from shared.errors import BadRequest
from shared.providers.base import HandshakeReply, InboundRequest, Provider, ProviderInfo, Verified
from shared.providers.generic_hmac_sha256 import GenericHmacSha256
from shared.providers.standard_webhooks import StandardWebhooks

__all__ = [
    "PROVIDERS",
    "HandshakeReply",
    "InboundRequest",
    "Provider",
    "ProviderInfo",
    "Verified",
    "get_provider",
]

PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        StandardWebhooks(),
        GenericHmacSha256(),
    )
}


def get_provider(name: str) -> Provider:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise BadRequest(
            f"unknown provider {name!r}; GET /v1/providers lists the supported ones",
            code="unknown_provider",
        ) from None
