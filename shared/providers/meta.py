"""Meta (Facebook, Instagram, WhatsApp Cloud API): ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app
secret, raw body)>`` on every event POST.

Subscribing a callback URL is a GET handshake: ``hub.mode=subscribe&hub.verify_token=…&hub.challenge=…``.
When ``hub.verify_token`` equals the connection's ``settings.verify_token`` (a string the user types in
both places) the challenge is echoed as text/plain and the handshake counts as verification; otherwise
403 ``verify_token_mismatch``. The handshake needs no app secret, so it works before the secret is set.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any, ClassVar

from shared.errors import SettingsError, VerificationError
from shared.providers import core
from shared.providers.adapter_kit import PastedSecretProvider, echo_token, token_id
from shared.providers.base import HandshakeReply, InboundRequest, Proof, ProviderInfo, Verified
from shared.providers.events import body_fingerprint, json_body

SIGNATURE = "X-Hub-Signature-256"
MAX_TOKEN_CHARS = 256


def _event_type(data: Any) -> str | None:
    """``whatsapp_business_account.messages``: the object plus the first change's field."""
    if not isinstance(data, dict) or not isinstance(data.get("object"), str):
        return None
    entries = data.get("entry") if isinstance(data.get("entry"), list) else []
    first = entries[0] if entries and isinstance(entries[0], dict) else {}
    changes = first.get("changes") if isinstance(first.get("changes"), list) else []
    field = changes[0].get("field") if changes and isinstance(changes[0], dict) else None
    return f"{data['object']}.{field}"[:200] if isinstance(field, str) else str(data["object"])[:200]


class Meta(PastedSecretProvider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="meta",
        title="Meta (Facebook, Instagram, WhatsApp)",
        headers=(SIGNATURE,),
        scheme="'sha256=' + hex HMAC-SHA256(app secret, raw body)",
        handshake="GET hub.mode=subscribe: the hub.challenge is echoed when hub.verify_token matches",
        secret_format="the app's App Secret (App Dashboard -> App settings -> Basic)",
        settings={"verify_token": "required: the Verify Token you type in the app's Webhooks settings"},
        test_instructions="App Dashboard -> Webhooks (or WhatsApp -> Configuration) -> Callback URL: paste "
        "the webhook URL and the verify token -> Verify and save; then Test on a field.",
    )
    handshake_proof: ClassVar[Proof] = "setting"  # hub.verify_token must match settings.verify_token
    methods: ClassVar[tuple[str, ...]] = ("GET", "POST")
    # The GET handshake proves the verify token, not the app secret (core lets it through without one).
    secretless_get: ClassVar[bool] = True

    def generate_secret(self) -> str:
        return core.SECRET_PENDING  # Meta issues the app secret

    def validate_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(settings) - {"verify_token"})
        if unknown:
            raise SettingsError(f"meta takes only the verify_token setting, not {unknown[0]!r}", field=unknown[0])
        token = settings.get("verify_token")
        if not isinstance(token, str) or not token.strip() or len(token) > MAX_TOKEN_CHARS:
            raise SettingsError(
                f"settings.verify_token is required: the Verify Token typed in Meta's Webhooks settings "
                f"(1-{MAX_TOKEN_CHARS} characters)",
                field="verify_token",
            )
        return {"verify_token": token}

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        if request.method == "GET":
            return self._subscribe(request, settings)
        raw = core.require_header(request, SIGNATURE)
        core.check_hex(core.hmac_digest(secret.encode(), request.body), raw, "sha256=", SIGNATURE)
        data = json_body(request.body)
        return Verified(event_id=body_fingerprint(request.body), event_type=_event_type(data))

    @staticmethod
    def _subscribe(request: InboundRequest, settings: Mapping[str, Any]) -> Verified:
        if request.query.get("hub.mode") != "subscribe":
            raise VerificationError(
                "malformed_handshake",
                "A GET must be Meta's subscription handshake: hub.mode=subscribe with hub.verify_token and "
                "hub.challenge.",
                status=400,
            )
        challenge = echo_token(request.query.get("hub.challenge"), "hub.challenge")
        expected = str(settings.get("verify_token") or "")
        given = request.query.get("hub.verify_token") or ""
        if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
            raise VerificationError(
                "verify_token_mismatch",
                "Meta's hub.verify_token does not match this connection's verify token. Type the same "
                "Verify Token in Meta's Webhooks settings as in the connection's settings.verify_token.",
                status=403,
            )
        return Verified(
            event_id=token_id("meta-subscribe", challenge),
            event_type="subscribe",
            is_test=True,
            handshake=True,
            reply=HandshakeReply(body=challenge.encode(), content_type="text/plain"),
        )
