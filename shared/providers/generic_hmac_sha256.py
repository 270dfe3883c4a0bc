"""``generic-hmac-sha256``: ``X-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>``.

The simplest scheme a home-grown sender can implement. The event id comes from an ``X-Event-Id``
header or the body's ``id`` field; failing both, from the body's SHA-256 (same bytes, same delivery).
"""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Mapping
from typing import Any, ClassVar

from shared.errors import SettingsError, VerificationError
from shared.providers import core
from shared.providers.base import InboundRequest, Provider, ProviderInfo, Verified
from shared.providers.events import body_fingerprint, dig, json_body


class GenericHmacSha256(Provider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="generic-hmac-sha256",
        title="Generic HMAC-SHA256",
        headers=("X-Signature-256",),
        scheme="'sha256=' + hex HMAC-SHA256(secret as UTF-8, raw body)",
        handshake=None,
        secret_format="any string of 16+ characters; generated: 64 hex characters",
        settings={},
        test_instructions="Send any signed request to the webhook URL.",
    )

    def generate_secret(self) -> str:
        return _secrets.token_hex(32)

    def validate_secret(self, secret: str) -> str:
        if len(secret) < 16:
            raise SettingsError("the signing secret is too short (at least 16 characters)", field="secret")
        return secret

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        raw = core.require_header(request, "X-Signature-256")
        scheme, sep, value = raw.partition("=")
        if not sep or scheme.strip().lower() != "sha256":
            raise VerificationError(
                core.MALFORMED_SIGNATURE,
                "The X-Signature-256 header must look like 'sha256=<hex digest>'.",
                header="X-Signature-256",
            )
        given = core.decode_hex(value.strip(), "X-Signature-256 digest")
        expected = core.hmac_digest(secret.encode(), request.body)
        if not core.constant_time_equal(expected, given):
            raise core.mismatch()
        data = json_body(request.body)
        header_id = request.headers.get("X-Event-Id")
        event_id = header_id or dig(data, "id") or body_fingerprint(request.body)
        # X-Event-Id is not signed: the body's fingerprint decides a replay with a fresh one.
        return Verified(event_id=event_id, event_type=dig(data, "type"),
                        fingerprint=body_fingerprint(request.body) if header_id else None)
