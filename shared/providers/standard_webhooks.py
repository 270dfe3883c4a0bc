"""Standard Webhooks (standardwebhooks.com), the scheme Svix and many others sign with.

``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` (``svix-*`` accepted too); the signed
content is ``{id}.{timestamp}.{body}``. The signature header holds space-separated entries, any of which
may match: ``v1,<base64 HMAC-SHA256>`` keyed with the base64 part after ``whsec_``, or (asymmetric)
``v1a,<base64 ed25519 signature>`` checked with the sender's ``whpk_`` public key. A ``whsk_`` key pair
given at creation is stored as its public key only: verifying never needs the private half.
"""

from __future__ import annotations

import base64
import functools
import secrets as _secrets
from collections.abc import Mapping
from typing import Any, ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from shared.errors import SettingsError, VerificationError
from shared.providers import core
from shared.providers.base import InboundRequest, Provider, ProviderInfo, Verified
from shared.providers.events import event_type_of

SECRET_PREFIX = "whsec_"
PUBLIC_PREFIX = "whpk_"
PRIVATE_PREFIX = "whsk_"


def _b64(raw: str, what: str) -> bytes:
    """A stored key's bytes; not base64 means the secret was pasted wrongly (``secret_format``)."""
    return core.decode_b64(raw, f"connection's {what}", code="secret_format",
                           advice="; paste it again exactly as the sender shows it")


@functools.lru_cache(maxsize=4096)
def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (the prefix is optional). Kept for the secrets in use, which
    the receiver holds in memory anyway: a webhook does not decode its connection's key again."""
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    return _b64(raw, "signing secret (whsec_<base64>)")


def public_key(secret: str) -> Ed25519PublicKey:
    """The ed25519 public key of a ``whpk_`` secret."""
    raw = _b64(secret[len(PUBLIC_PREFIX) :], "public key (whpk_<base64>)")
    if len(raw) != 32:
        raise VerificationError("secret_format", "A whpk_ public key must be 32 bytes (base64-encoded).")
    return Ed25519PublicKey.from_public_bytes(raw)


def public_of_private(secret: str) -> str:
    """``whsk_<seed or seed+public>`` -> ``whpk_<public>``."""
    raw = _b64(secret[len(PRIVATE_PREFIX) :], "secret key (whsk_<base64>)")
    if len(raw) not in (32, 64):
        raise VerificationError("secret_format", "A whsk_ secret key must be 32 or 64 bytes (base64).")
    pub = Ed25519PrivateKey.from_private_bytes(raw[:32]).public_key()
    return PUBLIC_PREFIX + base64.b64encode(pub.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


@functools.cache
def _header_names(prefixes: tuple[str, ...], suffix: str) -> tuple[str, ...]:
    """A header's names under each prefix (a subclass may reorder them): built once, not per request."""
    return tuple(p + suffix for p in prefixes)


class StandardWebhooks(Provider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="standard-webhooks",
        title="Standard Webhooks",
        headers=("webhook-id", "webhook-timestamp", "webhook-signature"),
        scheme="v1: base64 HMAC-SHA256 over '{id}.{timestamp}.{body}', key = base64 after whsec_; "
        "v1a: base64 ed25519 signature over the same, checked with a whpk_ public key; 300 s",
        handshake=None,
        secret_format="whsec_ + base64 of 24-64 random bytes (generated when none is given), or the "
        "sender's whpk_ public key (a whsk_ key pair is stored as its public key)",
        settings={},
        test_instructions="Send any event from the sender; with Svix: Webhooks -> Endpoint -> Testing -> "
        "Send Example.",
    )
    tolerance_s: ClassVar[int | None] = 300
    header_prefixes: ClassVar[tuple[str, ...]] = ("webhook-", "svix-")

    def generate_secret(self) -> str:
        return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode()

    def validate_secret(self, secret: str) -> str:
        secret = secret.strip()
        try:
            if secret.startswith(PRIVATE_PREFIX):
                secret = public_of_private(secret)
            if secret.startswith(PUBLIC_PREFIX):
                public_key(secret)
                return secret
            key = decode_secret(secret)
        except VerificationError as exc:
            raise SettingsError(exc.message, field="secret") from exc
        if len(key) < 16:
            raise SettingsError("the signing secret is too short (at least 16 bytes)", field="secret")
        return secret

    def _header(self, request: InboundRequest, suffix: str) -> str:
        return core.require_header(request, *_header_names(self.header_prefixes, suffix))

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        msg_id = self._header(request, "id")
        raw_ts = self._header(request, "timestamp")
        raw_sig = self._header(request, "signature")
        timestamp = core.parse_timestamp(raw_ts, "webhook-timestamp")
        entries = self._signatures(raw_sig)
        signed = f"{msg_id}.{raw_ts}.".encode() + request.body
        if secret.startswith(PUBLIC_PREFIX):
            self._check_ed25519(public_key(secret), signed, entries.get("v1a", []))
        else:
            self._check_hmac(decode_secret(secret), signed, entries.get("v1", []))
        # After the signature: a timestamp error then always means a genuine replay or a skewed clock.
        core.check_tolerance(timestamp, now, self.tolerance_s or 300)
        return Verified(event_id=msg_id, event_type=event_type_of(request.body, "type"))

    @staticmethod
    def _check_hmac(key: bytes, signed: bytes, candidates: list[bytes]) -> None:
        if not candidates:
            raise _wrong_kind("v1a (ed25519)", "a whsec_ (HMAC) secret", "whpk_ public key")
        if not core.any_matches(core.hmac_digest(key, signed), candidates):
            raise core.mismatch()

    @staticmethod
    def _check_ed25519(key: Ed25519PublicKey, signed: bytes, candidates: list[bytes]) -> None:
        if not candidates:
            raise _wrong_kind("v1 (HMAC)", "a whpk_ (ed25519) public key", "whsec_ signing secret")
        for candidate in candidates:
            try:
                key.verify(candidate, signed)
                return
            except InvalidSignature:
                continue
        raise core.mismatch("The connection holds a whpk_ public key: it must be the sender's current one.")

    @staticmethod
    def _signatures(raw: str) -> dict[str, list[bytes]]:
        found: dict[str, list[bytes]] = {}
        entries = raw.split()
        core.check_signature_count(len(entries), "webhook-signature")  # each v1a entry costs an ed25519 check
        for entry in entries:
            version, _, value = entry.partition(",")
            if version in ("v1", "v1a") and value:
                found.setdefault(version, []).append(core.decode_b64(value, "webhook-signature value"))
        if not found:
            raise VerificationError(
                core.MALFORMED_SIGNATURE,
                "The webhook-signature header has no 'v1,<base64>' or 'v1a,<base64>' entry.",
                header="webhook-signature",
            )
        return found


def _wrong_kind(signed_with: str, holds: str, wanted: str) -> VerificationError:
    return VerificationError(
        "secret_format",
        f"The request is signed with {signed_with} only, but the connection holds {holds}. Reconnect "
        f"with the sender's {wanted}.",
    )
