"""Dropbox: ``GET ?challenge=...`` is echoed back; events carry ``X-Dropbox-Signature``.

Verification handshake: Dropbox sends ``GET <url>?challenge=<token>`` when the webhook URI is added and
expects the token back as the body, with ``Content-Type: text/plain`` and
``X-Content-Type-Options: nosniff`` (so the echo can never be sniffed as HTML). Notifications are POSTs
with ``X-Dropbox-Signature`` = hex HMAC-SHA256(app secret, raw body).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from shared.providers import core
from shared.providers.adapter_kit import IssuedSecretProvider, echo_handshake
from shared.providers.base import InboundRequest, Proof, ProviderInfo, Verified
from shared.providers.events import json_body

SIGNATURE = "X-Dropbox-Signature"


class Dropbox(IssuedSecretProvider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="dropbox",
        title="Dropbox",
        headers=(SIGNATURE,),
        scheme="hex HMAC-SHA256(app secret, raw body)",
        handshake="GET ?challenge=<token>: the token is echoed as text/plain with "
        "X-Content-Type-Options: nosniff",
        secret_format="the app secret (App Console -> your app -> Settings -> App secret)",
        settings={},
        test_instructions="App Console -> your app -> Webhooks: add the webhook URL (Dropbox sends the "
        "challenge at once), then change a file in a linked account.",
    )
    handshake_proof: ClassVar[Proof] = "nothing"  # an unsigned echo
    methods: ClassVar[tuple[str, ...]] = ("GET", "POST")
    # The challenge echo is unsigned whether or not the app secret is known, so it is answered before
    # the secret is pasted: Dropbox will not save the webhook URL until the challenge is answered.
    secretless_get: ClassVar[bool] = True

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        if request.method == "GET":
            return echo_handshake(request.query.get("challenge"), "challenge query parameter", "dropbox-challenge",
                                  "challenge")
        given = core.decode_hex(core.require_header(request, SIGNATURE), f"{SIGNATURE} value")
        if not core.constant_time_equal(core.hmac_digest(secret.encode(), request.body), given):
            raise core.mismatch("Dropbox signs with the app secret, not the app key or an access token.")
        data = json_body(request.body)
        kind = next(iter(data), None) if isinstance(data, dict) else None
        # No event id: Dropbox sends the very same body for every change in an account, so a body hash
        # would drop real notifications as duplicates for days.
        return Verified(event_id=None, event_type=kind)
