"""What a provider adapter is, and what it gives back.

A provider is a small adapter onto the verification core (``shared.providers.core``): it knows its
headers, the string it signs, how its secret is encoded and which requests are handshakes. It never
touches Redis, RabbitMQ or HTTP objects: the receiver hands it an ``InboundRequest`` and gets back
``Verified`` or a ``VerificationError`` with a reason code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

SecretSlot = Literal["current", "previous"]
Proof = Literal["secret", "setting", "nothing"] | None


@dataclass(frozen=True, slots=True)
class InboundRequest:
    """One HTTP request as the provider sent it. ``headers`` look-ups are case-insensitive."""

    method: str
    url: str  # the connection's public webhook_url plus the query string as received
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class HandshakeReply:
    """What the receiver answers at once to a registration handshake (instead of 202)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)  # not frozen: one per webhook, and a frozen one costs 5x to build
class Verified:
    """A request that proved it came from the provider."""

    event_id: str | None = None
    event_type: str | None = None
    is_test: bool = False
    handshake: bool = False
    reply: HandshakeReply | None = None
    secret_slot: SecretSlot = "current"
    # A handshake anyone can send (an echo): it proves nothing about the secret, so it is answered and
    # recorded as ``reachable`` but never connects a connection nor passes a test.
    reachable_only: bool = False
    # When ``event_id`` comes from something the signature does not cover (an unsigned header such as
    # X-GitHub-Delivery), a fingerprint of the signed content: a delivery is a duplicate when either was
    # seen, so a captured request replayed with a fresh id still counts once.
    fingerprint: str | None = None
    # A secret offered by the handshake itself (Asana's X-Hook-Secret). The receiver stores it, once,
    # with a compare-and-set on the placeholder; it never travels in a delivery message.
    learnt_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """What the product's setup screen needs to know about a provider (``GET /v1/providers``)."""

    name: str
    title: str
    headers: tuple[str, ...]
    scheme: str
    handshake: str | None
    secret_format: str
    settings: Mapping[str, str]  # setting name -> what it is ("required: ..." / "optional: ...")
    test_instructions: str
    # Catalog data (shared/providers/catalog.toml); adapters written in code get theirs from there too.
    category: str = ""
    setup: tuple[str, ...] = ()  # the steps a person takes in the provider's dashboard
    docs_url: str = ""
    checked_against: str = ""  # sdk:<package>, vector:<docs url> or scheme:<docs url>


class Provider:
    """Base class for adapters. Subclasses set ``info`` and implement ``verify``."""

    info: ClassVar[ProviderInfo]
    # Some schemes sign a timestamp; this is their default tolerance in seconds.
    tolerance_s: ClassVar[int | None] = None
    # HTTP methods the provider sends; GET only for providers whose handshake is a GET.
    methods: ClassVar[tuple[str, ...]] = ("POST",)
    # What a successful handshake proves, for providers that have one: ``secret`` (it is signed),
    # ``setting`` (it carries a value only the owner and the provider know) or ``nothing`` (anyone
    # with the URL can send it: answered, recorded as reachable, never counted as verification).
    handshake_proof: ClassVar[Proof] = None
    # Providers whose handshake offers the secret (Asana): the prefix of the placeholder a connection
    # holds until then. The receiver stores an offered secret only in place of such a placeholder.
    secret_placeholder: ClassVar[str | None] = None

    @property
    def name(self) -> str:
        return self.info.name

    def generate_secret(self) -> str:
        raise NotImplementedError

    def validate_secret(self, secret: str) -> str:
        """Return the secret as it will be stored; raise ``SettingsError`` if unusable."""
        return secret

    def validate_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Return normalised settings; raise ``SettingsError`` for missing or invalid ones."""
        if settings:
            from shared.errors import SettingsError

            raise SettingsError(f"provider {self.name!r} takes no settings", field=next(iter(settings)))
        return {}

    def verify(
        self,
        request: InboundRequest,
        secret: str,
        settings: Mapping[str, Any],
        now: float,
    ) -> Verified:
        """Verify one request with one secret. Raise ``VerificationError`` with a reason code."""
        raise NotImplementedError
