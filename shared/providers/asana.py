"""Asana: the signing secret arrives in the registration handshake.

When a webhook is created, Asana POSTs to the target with an ``X-Hook-Secret`` header and expects a 2xx
echoing that header back; the value becomes the secret for every later event, which carries
``X-Hook-Signature`` = hex HMAC-SHA256(that secret, raw body).

So a new connection has no real secret yet: it is created with a *placeholder* (``asana-pending:...``)
and a handshake is accepted only while the placeholder is the current secret (or when it repeats the
secret already learnt). The verifier then stores the learnt secret in place of the placeholder.

Security trade-off: the handshake is unsigned, so whoever first POSTs an ``X-Hook-Secret`` to the
webhook URL while the connection awaits its handshake sets the secret. The URL holds a 128-bit random
id and is shown only to the connection's owner, and a hijacked handshake makes Asana's own handshake
fail (the webhook is not created) rather than pass silently; reconnecting with ``"secret":
"await-handshake"`` opens the handshake again for a new Asana webhook.
"""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Mapping
from typing import Any, ClassVar

from shared.errors import VerificationError
from shared.providers import core
from shared.providers.adapter_kit import echo_token, pasted_secret
from shared.providers.base import HandshakeReply, InboundRequest, Provider, ProviderInfo, Verified
from shared.providers.events import body_fingerprint, json_body

HOOK_SECRET = "X-Hook-Secret"
SIGNATURE = "X-Hook-Signature"
PLACEHOLDER_PREFIX = "asana-pending:"
REOPEN = "await-handshake"
HEARTBEAT = "heartbeat"


def is_placeholder(secret: str) -> bool:
    return secret.startswith(PLACEHOLDER_PREFIX)


class Asana(Provider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="asana",
        title="Asana",
        headers=(HOOK_SECRET, SIGNATURE),
        scheme="hex HMAC-SHA256(X-Hook-Secret from the handshake, raw body)",
        handshake="POST with X-Hook-Secret: answered 200 echoing X-Hook-Secret; the value is stored as "
        "the connection's secret",
        secret_format="none needed: the secret is learnt from Asana's handshake (reconnect with "
        "\"secret\": \"await-handshake\" to accept a new one)",
        settings={},
        test_instructions="Create the webhook (POST /webhooks with this URL as target); Asana's handshake "
        "verifies the connection.",
    )

    def generate_secret(self) -> str:
        return PLACEHOLDER_PREFIX + _secrets.token_hex(16)

    def validate_secret(self, secret: str) -> str:
        if secret.strip() == REOPEN:
            return self.generate_secret()
        return pasted_secret(secret)

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        offered = request.headers.get(HOOK_SECRET)
        if offered is not None:
            return _handshake(echo_token(offered.strip(), f"{HOOK_SECRET} header"), secret)
        given = core.decode_hex(core.require_header(request, SIGNATURE), f"{SIGNATURE} value")
        if is_placeholder(secret):
            raise core.mismatch(
                "No X-Hook-Secret handshake has been seen for this connection yet: create the Asana "
                "webhook with this URL as its target."
            )
        if not core.constant_time_equal(core.hmac_digest(secret.encode(), request.body), given):
            raise core.mismatch("The secret is the X-Hook-Secret of the webhook's handshake.")
        event_type = _event_type(request.body)
        # Heartbeats are identical bodies sent again and again: each one is news, not a retry.
        event_id = None if event_type == HEARTBEAT else body_fingerprint(request.body)
        return Verified(event_id=event_id, event_type=event_type)


def _handshake(offered: str, secret: str) -> Verified:
    if not is_placeholder(secret) and not core.constant_time_equal(offered.encode(), secret.encode()):
        raise VerificationError(
            "handshake_not_expected",
            "An X-Hook-Secret handshake arrived, but this connection already learnt its secret from an "
            "earlier one. To register a new Asana webhook here, reconnect with \"secret\": "
            "\"await-handshake\" first.",
            header=HOOK_SECRET,
        )
    return Verified(
        event_type="handshake",
        is_test=True,
        handshake=True,
        learnt_secret=offered if is_placeholder(secret) else None,
        reply=HandshakeReply(status=200, headers={HOOK_SECRET: offered}),
    )


def _event_type(body: bytes) -> str | None:
    data = json_body(body)
    events = data.get("events") if isinstance(data, dict) else None
    if events == []:
        return HEARTBEAT  # Asana's periodic empty delivery
    if not isinstance(events, list) or not isinstance(events[0], dict):
        return None
    first = events[0]
    resource = first.get("resource")
    kind = resource.get("resource_type") if isinstance(resource, dict) else None
    action = first.get("action")
    return f"{kind}.{action}"[:200] if kind and action else None
