"""Standard Webhooks (standardwebhooks.com), the scheme Svix and many others sign with.

``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` (``svix-*`` accepted too); the signed
content is ``{id}.{timestamp}.{body}``; the key is the base64 part after ``whsec_``; the signature header
holds space-separated ``v1,<base64 HMAC-SHA256>`` entries, any of which may match.
"""

from __future__ import annotations

import base64
import binascii
import secrets as _secrets
from collections.abc import Mapping
from typing import Any, ClassVar

from shared.errors import SettingsError, VerificationError
from shared.providers import core
from shared.providers.base import InboundRequest, Provider, ProviderInfo, Verified
from shared.providers.events import event_type_of

SECRET_PREFIX = "whsec_"


def decode_secret(secret: str) -> bytes:
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(
            "secret_format",
            "The connection's signing secret is not in the whsec_<base64> format; paste it again exactly "
            "as the provider shows it.",
        ) from exc


class StandardWebhooks(Provider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="standard-webhooks",
        title="Standard Webhooks",
        headers=("webhook-id", "webhook-timestamp", "webhook-signature"),
        scheme="v1: base64 HMAC-SHA256 over '{id}.{timestamp}.{body}', key = base64 after whsec_",
        handshake=None,
        secret_format="whsec_ + base64 of 24-64 random bytes",
        settings={},
        test_instructions="Send any event from the sender; with Svix: Webhooks -> Endpoint -> Testing -> "
        "Send Example.",
    )
    tolerance_s: ClassVar[int | None] = 300
    header_prefixes: ClassVar[tuple[str, ...]] = ("webhook-", "svix-")

    def generate_secret(self) -> str:
        return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode()

    def validate_secret(self, secret: str) -> str:
        try:
            key = decode_secret(secret)
        except VerificationError as exc:
            raise SettingsError(exc.message, field="secret") from exc
        if len(key) < 16:
            raise SettingsError("the signing secret is too short (at least 16 bytes)", field="secret")
        return secret

    def _header(self, request: InboundRequest, suffix: str) -> str:
        return core.require_header(request, *(p + suffix for p in self.header_prefixes))

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        msg_id = self._header(request, "id")
        raw_ts = self._header(request, "timestamp")
        raw_sig = self._header(request, "signature")
        timestamp = core.parse_timestamp(raw_ts, "webhook-timestamp")
        candidates = self._signatures(raw_sig)
        core.check_tolerance(timestamp, now, self.tolerance_s or 300)
        signed = f"{msg_id}.{raw_ts}.".encode() + request.body
        expected = core.hmac_digest(decode_secret(secret), signed)
        if not core.any_matches(expected, candidates):
            raise core.mismatch()
        return Verified(event_id=msg_id, event_type=event_type_of(request.body, "type"))

    @staticmethod
    def _signatures(raw: str) -> list[bytes]:
        found: list[bytes] = []
        for entry in raw.split():
            version, _, value = entry.partition(",")
            if version == "v1" and value:
                found.append(core.decode_b64(value, "webhook-signature value"))
        if not found:
            raise VerificationError(
                core.MALFORMED_SIGNATURE,
                "The webhook-signature header has no 'v1,<base64>' entry.",
                header="webhook-signature",
            )
        return found
