"""Microsoft Graph change notifications.

Subscription validation: on ``POST /subscriptions`` Graph POSTs to the notification URL with
``?validationToken=<token>`` and needs the token back, URL-decoded, as ``text/plain`` with 200 within
10 s. Notifications are then unsigned JSON ``{"value": [...]}``; each item carries the ``clientState``
set on the subscription, which must equal the connection's ``settings.client_state`` (compared in
constant time). The connection's ``secret`` is not used by this scheme.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from shared.errors import SettingsError, VerificationError
from shared.providers import core
from shared.providers.adapter_kit import PastedSecretProvider, echo_handshake, random_secret
from shared.providers.base import InboundRequest, Proof, ProviderInfo, Verified
from shared.providers.events import body_fingerprint, json_body

CLIENT_STATE_MAX = 128  # Graph's limit on clientState
# Graph's validation tokens are words, spaces, colons and a request id ("Validation: Testing client
# application reachability for subscription Request-Id: <uuid>"); never braces or quotes.
VALIDATION_TOKEN = re.compile(r"[A-Za-z0-9 _\-.:+/=]{1,512}")


class MsGraph(PastedSecretProvider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="msgraph",
        title="Microsoft Graph change notifications",
        headers=(),
        scheme="no signature: every notification's clientState must equal settings.client_state",
        handshake="POST ?validationToken=<token>: the token is echoed as text/plain with 200",
        secret_format="not used (the shared value is settings.client_state)",
        settings={
            "client_state": f"required: the clientState set on the subscription (1-{CLIENT_STATE_MAX} "
            "characters; use a random value)"
        },
        test_instructions="Create the subscription (POST /subscriptions with this URL as notificationUrl "
        "and the same clientState), then make a change in the resource: the first notification with the "
        "clientState verifies the connection (the validation request only shows the URL is reachable).",
    )
    handshake_proof: ClassVar[Proof] = "nothing"  # an unsigned echo

    def generate_secret(self) -> str:
        return random_secret()

    def validate_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(settings) - {"client_state"})
        if unknown:
            raise SettingsError(f"unknown msgraph setting(s): {', '.join(unknown)}", field=unknown[0])
        value = settings.get("client_state")
        if not isinstance(value, str) or not 1 <= len(value) <= CLIENT_STATE_MAX or not value.isprintable():
            raise SettingsError(
                f"settings.client_state is required: the subscription's clientState, 1-{CLIENT_STATE_MAX} "
                "printable characters",
                field="client_state",
            )
        return {"client_state": value}

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        if "validationToken" in request.query:
            return echo_handshake(request.query.get("validationToken"), "validationToken query parameter",
                                  "msgraph-validation", "validation", VALIDATION_TOKEN)
        items = _notifications(request.body)
        expected = str(settings.get("client_state") or "").encode()
        if not expected:  # never let an empty clientState match an empty one
            raise core.mismatch("The connection has no settings.client_state; reconnect with one.")
        for item in items:
            given = item.get("clientState")
            if not isinstance(given, str) or not core.constant_time_equal(expected, given.encode()):
                raise core.mismatch(
                    "For Microsoft Graph this is the clientState: the subscription's clientState must equal "
                    "the connection's settings.client_state."
                )
        first = items[0]
        kind = first.get("lifecycleEvent") or first.get("changeType")
        return Verified(
            event_id=body_fingerprint(request.body), event_type=str(kind)[:200] if kind else None
        )


def _notifications(body: bytes) -> list[dict[str, Any]]:
    data = json_body(body)
    items = data.get("value") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise VerificationError(
            core.MALFORMED_BODY,
            "A Microsoft Graph notification must be JSON with a non-empty 'value' list of notifications.",
        )
    return items
