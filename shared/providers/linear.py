"""Linear: ``Linear-Signature`` is hex HMAC-SHA256(signing secret, raw body).

The timestamp is not a header but the body's ``webhookTimestamp`` (milliseconds); Linear's docs and SDK
reject deliveries more than 60 s away from the receiver's clock. It is read only after the signature
verified, since only then is the body trusted. Like Linear's SDK (``LinearWebhookClient.verify``), a body
without the field is refused: Linear always sends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from shared.errors import VerificationError
from shared.providers import core
from shared.providers.adapter_kit import IssuedSecretProvider
from shared.providers.base import InboundRequest, ProviderInfo, Verified
from shared.providers.events import body_fingerprint, json_body

SIGNATURE = "Linear-Signature"


class Linear(IssuedSecretProvider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="linear",
        title="Linear",
        headers=(SIGNATURE, "Linear-Delivery", "Linear-Event"),
        scheme="hex HMAC-SHA256(signing secret, raw body); body field webhookTimestamp (ms), 60 s tolerance",
        handshake=None,
        secret_format="the webhook's signing secret (Settings -> API -> Webhooks -> your webhook)",
        settings={},
        test_instructions="Create or edit an issue in a team the webhook listens to.",
    )
    tolerance_s: ClassVar[int | None] = 60

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        given = core.decode_hex(core.require_header(request, SIGNATURE), f"{SIGNATURE} value")
        if not core.constant_time_equal(core.hmac_digest(secret.encode(), request.body), given):
            raise core.mismatch()
        data = json_body(request.body)
        stamp = data.get("webhookTimestamp") if isinstance(data, dict) else None
        if stamp is None:
            raise VerificationError(
                core.MISSING_HEADER, "The body has no webhookTimestamp, which Linear signs into every delivery: "
                "this request was not sent by Linear as it is.", header="webhookTimestamp",
            )
        if isinstance(stamp, bool) or not isinstance(stamp, int):
            raise VerificationError(
                core.MALFORMED_TIMESTAMP, "The body's webhookTimestamp is not a millisecond timestamp."
            )
        core.check_tolerance(stamp / 1000, now, self.tolerance_s or 60)
        unsigned = bool(request.headers.get("Linear-Delivery"))  # not signed: the body's fingerprint counts too
        return Verified(event_id=_event_id(request, data), event_type=_event_type(data),
                        fingerprint=body_fingerprint(request.body) if unsigned else None)


def _event_id(request: InboundRequest, data: Any) -> str:
    delivery = request.headers.get("Linear-Delivery")
    if delivery:
        return f"linear:{delivery[:200]}"
    return body_fingerprint(request.body)


def _event_type(data: Any) -> str | None:
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return None
    action = data.get("action")
    return f"{data['type']}.{action}"[:200] if isinstance(action, str) else data["type"][:200]
