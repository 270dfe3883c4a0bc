"""GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>``.

``X-GitHub-Event`` names the event and ``X-GitHub-Delivery`` (a GUID) identifies it. The ``ping``
event GitHub sends when a hook is created (or on "Redeliver") verifies the connection and is marked as
a test. The legacy ``X-Hub-Signature: sha1=...`` is accepted only when it is the only signature sent
(old GitHub Enterprise Server versions).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from shared.providers import core
from shared.providers.adapter_kit import PastedSecretProvider, random_secret
from shared.providers.base import InboundRequest, Proof, ProviderInfo, Verified
from shared.providers.events import body_fingerprint

SIGNATURE = "X-Hub-Signature-256"
LEGACY_SIGNATURE = "X-Hub-Signature"
EVENT = "X-GitHub-Event"
DELIVERY = "X-GitHub-Delivery"


class GitHub(PastedSecretProvider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="github",
        title="GitHub",
        headers=(SIGNATURE, EVENT, DELIVERY),
        scheme="'sha256=' + hex HMAC-SHA256(secret as UTF-8, raw body)",
        handshake="ping (sent when the webhook is created) verifies the connection",
        secret_format="the webhook's Secret; you choose it in GitHub (generated here when none is given)",
        settings={},
        test_instructions="Settings -> Webhooks -> your webhook -> Recent Deliveries -> ping -> Redeliver.",
    )
    handshake_proof: ClassVar[Proof] = "secret"  # ping is signed like every event

    def generate_secret(self) -> str:
        return random_secret()

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        if request.headers.get(SIGNATURE) is None and request.headers.get(LEGACY_SIGNATURE):
            raw = core.require_header(request, LEGACY_SIGNATURE)
            expected = core.hmac_digest(secret.encode(), request.body, "sha1")
            core.check_hex(expected, raw, "sha1=", LEGACY_SIGNATURE)
        else:
            raw = core.require_header(request, SIGNATURE)
            core.check_hex(core.hmac_digest(secret.encode(), request.body), raw, "sha256=", SIGNATURE)
        event = request.headers.get(EVENT)
        delivery = request.headers.get(DELIVERY)
        return Verified(
            event_id=f"github:{delivery}" if delivery else body_fingerprint(request.body),
            fingerprint=body_fingerprint(request.body) if delivery else None,  # the header is unsigned
            event_type=event,
            is_test=event == "ping",
        )
