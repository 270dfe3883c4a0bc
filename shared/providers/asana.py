"""Asana: the signing secret arrives in the registration handshake.

When a webhook is created, Asana POSTs to the target with an ``X-Hook-Secret`` header and expects a 2xx
echoing that header back; the value becomes the secret for every later event, which carries
``X-Hook-Signature`` = hex HMAC-SHA256(that secret, raw body).

So a new connection has no real secret yet: it is created with a *placeholder* (``asana-pending:...``)
and a handshake is accepted only while the placeholder is the current secret (or when it repeats the
secret already learnt). The receiver stores the offered secret itself, once: a compare-and-set on the
placeholder in the same atomic script that stores it (``shared/lua/learn_secret.lua``), so of two
racing handshakes exactly one wins and the other is refused (409 ``secret_already_learnt``). The
secret never travels in a delivery message.

The handshake is unsigned: it proves nothing about a secret (anyone with the URL can send one), so it
is recorded as ``reachable`` and the connection turns ``connected`` only with the first event signed
with the learnt secret. Trade-off: whoever first POSTs an ``X-Hook-Secret`` while the connection awaits
its handshake sets the secret. The URL holds a 128-bit random id shown only to the connection's owner,
and a hijacked handshake makes Asana's own handshake fail with 409 (the webhook is not created) rather
than pass silently; reconnecting with ``"secret": "await-handshake"`` opens the handshake again.
"""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Mapping
from typing import Any, ClassVar

from shared.providers import core
from shared.providers.adapter_kit import echo_token, pasted_secret
from shared.providers.base import HandshakeReply, InboundRequest, Proof, Provider, ProviderInfo, Verified
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
        "teaches the secret, then change a task in the project: the first signed event verifies the connection.",
    )
    handshake_proof: ClassVar[Proof] = "nothing"  # unsigned: it offers the secret, proves none
    secret_placeholder: ClassVar[str | None] = PLACEHOLDER_PREFIX

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
            return handshake(echo_token(offered.strip(), f"{HOOK_SECRET} header"), secret)
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


def handshake(offered: str, secret: str) -> Verified:
    """The handshake's answer; ``learnt_secret`` is set while the placeholder is current (the receiver
    then stores it with a compare-and-set, which decides between racing handshakes)."""
    if not is_placeholder(secret) and not core.constant_time_equal(offered.encode(), secret.encode()):
        raise core.secret_already_learnt()
    return Verified(
        event_type="handshake",
        is_test=True,
        handshake=True,
        reachable_only=True,
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
