"""Provider registry: name -> adapter.

Most providers are presets in ``catalog.toml`` (read once, here, at start-up, with the deployment's
``PROVIDER_CATALOG_EXTRA`` file if set); a provider whose scheme no family describes is a module and
one line below."""

from __future__ import annotations

from shared.errors import BadRequest
from shared.providers import catalog as _catalog
from shared.providers.asana import Asana
from shared.providers.base import HandshakeReply, InboundRequest, Provider, ProviderInfo, Verified
from shared.providers.calendly import Calendly
from shared.providers.dropbox import Dropbox
from shared.providers.generic_hmac import GenericHmac
from shared.providers.generic_hmac_sha256 import GenericHmacSha256
from shared.providers.github import GitHub
from shared.providers.hubspot import HubSpot
from shared.providers.linear import Linear
from shared.providers.meta import Meta
from shared.providers.msgraph import MsGraph
from shared.providers.slack import Slack
from shared.providers.standard_webhooks import StandardWebhooks
from shared.providers.stripe import Stripe
from shared.providers.svix import Svix
from shared.providers.twilio import Twilio
from shared.providers.twitter import Twitter
from shared.providers.zoom import Zoom

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
        Svix(),
        Stripe(),
        GitHub(),
        Slack(),
        Twilio(),
        Zoom(),
        Meta(),
        GenericHmac(),
        HubSpot(),
        Linear(),
        Calendly(),
        Dropbox(),
        Twitter(),
        Asana(),
        MsGraph(),
    )
}
_CATALOG = _catalog.load()
_catalog.describe_adapters(_CATALOG.adapters, PROVIDERS.values())
PROVIDERS.update(_catalog.build(_CATALOG, PROVIDERS))


def get_provider(name: str) -> Provider:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise BadRequest(
            f"unknown provider {name!r}; GET /v1/providers lists the supported ones",
            code="unknown_provider",
        ) from None
