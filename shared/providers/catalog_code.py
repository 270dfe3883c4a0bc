"""Catalog providers whose scheme no family describes: each a small subclass of its family.

Their data (title, category, headers, setup steps…) still lives in ``catalog.toml``; only the way the
signature is computed is code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import Any
from urllib.parse import quote, urlsplit

from shared.errors import SettingsError, VerificationError
from shared.providers import core
from shared.providers.adapter_kit import pasted_secret, token_id
from shared.providers.base import HandshakeReply, Verified
from shared.providers.events import body_fingerprint
from shared.providers.families import CatalogProvider, HmacFamily, Parsed, as_text, pointer

ACCEPTED = HandshakeReply(status=200, body=b"[accepted]", content_type="text/plain")


def _sha1_hmac(private_key: str, content: bytes) -> bytes:
    """Braintree's signature: HMAC-SHA1 keyed with the SHA-1 digest of the private key."""
    return hmac.new(hashlib.sha1(private_key.encode()).digest(), content, hashlib.sha1).digest()


class Braintree(HmacFamily):
    """Form fields ``bt_signature`` (``public_key|hex`` pairs joined by ``&``) and ``bt_payload``; the
    ``bt_challenge`` GET is answered with ``public_key|hex HMAC`` of the challenge."""

    handshake_needs_secret = True
    CHALLENGE = re.compile(r"[a-f0-9]{20,32}")
    PAYLOAD = re.compile(r"[A-Za-z0-9+=/\n]+")

    def validate_secret(self, secret: str) -> str:
        value = pasted_secret(secret)
        public, sep, private = value.partition(":")
        if not sep or not public or len(private) < 8:
            raise SettingsError("the secret must be 'public_key:private_key' (API Keys in the Control Panel)",
                                field="secret")
        return value

    @staticmethod
    def _keys(secret: str) -> tuple[str, str]:
        public, _, private = secret.partition(":")
        if not public or not private:
            raise VerificationError("secret_format", "The connection's secret must be 'public_key:private_key'.")
        return public, private

    def verify(self, request: Any, secret: str, settings: Any, now: float) -> Verified:
        parsed = Parsed(request)
        if request.method == "GET":
            return self._challenge(parsed, secret)
        self.check(parsed, secret, now)
        kind = _xml_field(_form_value(parsed, "bt_payload"), "kind")
        return Verified(event_id=body_fingerprint(request.body), event_type=kind, is_test=kind == "check")

    def _challenge(self, parsed: Parsed, secret: str) -> Verified:
        challenge = parsed.request.query.get("bt_challenge", "")
        if not self.CHALLENGE.fullmatch(challenge):
            raise VerificationError("invalid_handshake_token", "The bt_challenge is not the hex token Braintree "
                                    "sends.", status=400)
        public, private = self._keys(secret)
        answer = f"{public}|{_sha1_hmac(private, challenge.encode()).hex()}"
        return Verified(  # anyone may send a challenge: the answer proves our key, not the sender's
            event_id=token_id("braintree-check", challenge), event_type="check", is_test=True, handshake=True,
            reachable_only=True,
            reply=HandshakeReply(body=answer.encode(), content_type="text/plain",
                                 headers={"X-Content-Type-Options": "nosniff"}),
        )

    def check(self, parsed: Parsed, secret: str, now: float) -> None:
        raw_signature = parsed.require_form("bt_signature")
        parsed.require_form("bt_payload")
        payload = _form_value(parsed, "bt_payload") or ""  # whole, newlines kept: they are signed
        if not self.PAYLOAD.fullmatch(payload):
            raise VerificationError(core.MALFORMED_BODY, "bt_payload is not the base64 Braintree sends.")
        public, private = self._keys(secret)
        pairs = [pair.partition("|") for pair in raw_signature.split("&")]
        given = [core.decode_hex(sig, "bt_signature value") for key, sep, sig in pairs if sep and key == public]
        if not given:
            raise core.mismatch("The bt_signature names another public key: use this merchant's API key pair.")
        # Braintree's SDKs accept the payload with or without a final newline; so do we.
        expected = [_sha1_hmac(private, p.encode()) for p in (payload, payload + "\n")]
        if not any(core.any_matches(e, given) for e in expected):
            raise core.mismatch()


def _form_value(parsed: Parsed, name: str) -> str | None:
    values = parsed.form.get(name)
    return values[0] if values else None


def _xml_field(payload: str | None, name: str) -> str | None:
    if not payload:
        return None
    try:
        xml = base64.b64decode(payload).decode(errors="replace")
    except (binascii.Error, ValueError):
        return None
    found = re.search(rf"<{name}>([^<]{{1,100}})</{name}>", xml)
    return found.group(1) if found else None


class Adyen(HmacFamily):
    """Every notification item carries its own HMAC over eight of its fields (hex key); each must match.
    Adyen expects ``[accepted]`` as the answer to every notification."""

    FIELDS = ("pspReference", "originalReference", "merchantAccountCode", "merchantReference")
    TAIL = ("eventCode", "success")

    def check(self, parsed: Parsed, secret: str, now: float) -> None:
        items = pointer(parsed.json, "/notificationItems")
        if not isinstance(items, list) or not items:
            raise VerificationError(core.MISSING_HEADER, "The body has no notificationItems: not an Adyen "
                                    "notification.", header="notificationItems")
        key = _hex_key(secret)
        for raw in items:
            item = raw.get("NotificationRequestItem") if isinstance(raw, dict) else None
            if not isinstance(item, dict):
                raise VerificationError(core.MALFORMED_BODY, "A notification item has no NotificationRequestItem.")
            given = as_text(pointer(item, "/additionalData/hmacSignature"))
            if not given:
                raise VerificationError(core.MISSING_HEADER, "A notification item has no "
                                        "additionalData.hmacSignature: turn on HMAC signing for the webhook.",
                                        header="hmacSignature")
            expected = hmac.new(key, self._signed(item).encode(), hashlib.sha256).digest()
            if not core.constant_time_equal(expected, core.decode_b64(given, "hmacSignature")):
                raise core.mismatch("Use the webhook's HMAC key (hex), not an API key.")

    def _signed(self, item: dict[str, Any]) -> str:
        values = [as_text(item.get(name)) or "" for name in self.FIELDS]
        values += [as_text(pointer(item, "/amount/value")) or "", as_text(pointer(item, "/amount/currency")) or ""]
        values += [as_text(item.get(name)) or "" for name in self.TAIL]
        return ":".join(values)

    def verify(self, request: Any, secret: str, settings: Any, now: float) -> Verified:
        verified = super().verify(request, secret, settings, now)
        live = as_text(pointer(Parsed(request).json, "/live"))
        return Verified(event_id=verified.event_id, event_type=verified.event_type, is_test=live == "false",
                        reply=ACCEPTED)


def _hex_key(secret: str) -> bytes:
    try:
        return bytes.fromhex(secret)
    except ValueError as exc:
        raise VerificationError("secret_format", "Adyen's HMAC key is hex; paste it exactly as the Customer Area "
                                "shows it.") from exc


class Contentful(HmacFamily):
    """hex HMAC-SHA256 over ``method\\npath\\nheaders\\nbody``, the headers being those named in
    ``x-contentful-signed-headers`` (which must include the timestamp), lower-cased, sorted, ``k:v`` joined
    by ``;``."""

    TOLERANCE_S = 300
    tolerance_s = TOLERANCE_S

    def check(self, parsed: Parsed, secret: str, now: float) -> None:
        request = parsed.request
        given = core.decode_hex(parsed.require_header("x-contentful-signature"), "x-contentful-signature value")
        names = [n.strip().lower() for n in parsed.require_header("x-contentful-signed-headers").split(",")]
        if "x-contentful-timestamp" not in names:
            raise VerificationError(core.MALFORMED_SIGNATURE, "x-contentful-signed-headers does not sign the "
                                    "timestamp.", header="x-contentful-signed-headers")
        raw_ts = parsed.require_header("x-contentful-timestamp")
        timestamp = core.parse_timestamp(raw_ts, "x-contentful-timestamp", millis=True)
        headers = []
        for name in sorted(set(names)):
            value = request.headers.get(name)
            if value is None:
                raise VerificationError(core.MISSING_HEADER, f"The signed header {name} is missing.", header=name)
            headers.append(f"{name}:{value.strip()}")
        canonical = "\n".join([request.method, _contentful_path(request.url), ";".join(headers), ""]).encode()
        expected = hmac.new(secret.encode(), canonical + request.body, hashlib.sha256).digest()
        if not core.constant_time_equal(expected, given):
            raise core.mismatch("Use the space's webhook signing secret (Settings -> Webhooks -> Request "
                                "verification).")
        core.check_tolerance(timestamp, now, self.TOLERANCE_S)


def _contentful_path(url: str) -> str:
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:  # as Contentful's toolkit normalises it: the query escaped, then the whole URI-encoded
        path = f"{path}?{quote(parts.query, safe='')}"
    return quote(path, safe="/?:@&=+$,;#-_.!~*'()")


CODE: dict[str, type[CatalogProvider]] = {"braintree": Braintree, "adyen": Adyen, "contentful": Contentful}
