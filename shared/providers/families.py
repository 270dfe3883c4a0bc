"""The families catalog providers belong to, each implemented once: an HMAC over a template, Standard
Webhooks, Ed25519, ECDSA P-256, a JWT (HS256), a shared token, HTTP Basic credentials.

A catalog entry (``catalog_spec.Entry``) says which family and with which parameters; ``provider_class``
makes the adapter class for it. Every comparison is constant-time, every malformed value a reason code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets as _secrets
import warnings
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs

import jwt as pyjwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_der_public_key

from shared.errors import SettingsError, VerificationError
from shared.providers import core
from shared.providers.adapter_kit import echo_token, key_values, pasted_secret, random_secret, token_id, values_of
from shared.providers.base import HandshakeReply, InboundRequest, Provider, ProviderInfo, Verified
from shared.providers.catalog_spec import PLACEHOLDER, Condition, Entry, Location, Signature
from shared.providers.events import body_fingerprint, json_body
from shared.providers.standard_webhooks import StandardWebhooks

MAX_JSON_TEXT = 512
MIN_SECRET_CHARS = 8  # what adapter_kit.pasted_secret requires of a pasted secret


def pointer(data: Any, path: str) -> Any:
    """The value at a JSON pointer (``/a/b/0``), or ``None``."""
    for raw in path.split("/")[1:]:
        step = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(data, dict):
            data = data.get(step)
        elif isinstance(data, list) and step.isdigit() and int(step) < len(data):
            data = data[int(step)]
        else:
            return None
    return data


def as_text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)[:MAX_JSON_TEXT]


class Parsed:
    """One request with its JSON body parsed at most once."""

    def __init__(self, request: InboundRequest) -> None:
        self.request = request
        self._json: Any = ...
        self._form: dict[str, list[str]] | None = None

    @property
    def json(self) -> Any:
        if self._json is ...:
            self._json = json_body(self.request.body) if self.request.body[:1] in (b"{", b"[") else None
        return self._json

    @property
    def form(self) -> dict[str, list[str]]:
        if self._form is None:
            try:
                self._form = parse_qs(self.request.body.decode(), keep_blank_values=True, max_num_fields=200)
            except (UnicodeDecodeError, ValueError):
                self._form = {}
        return self._form

    def raw(self, at: Location) -> Any:
        if at.kind == "header":
            return self.request.headers.get(at.name)
        if at.kind == "query":
            return self.request.query.get(at.name)
        if at.kind == "form":
            values = self.form.get(at.name)
            return values[0] if values else None
        return pointer(self.json, at.name)

    def get(self, at: Location) -> str | None:
        return as_text(self.raw(at))

    def get_form(self, name: str) -> str | None:
        return self.get(Location("form", name))

    def require_form(self, name: str) -> str:
        return self.require(Location("form", name), "a signed field")

    def require_header(self, name: str) -> str:
        return self.require(Location("header", name), "part of the signature")

    def require(self, at: Location, what: str) -> str:
        if at.kind == "header" and self.request.headers.get(at.name):
            core.require_header(self.request, at.name)  # the core's limits: too long is refused before any work
        value = self.get(at)
        if value is None or not value.strip():
            where = {"header": f"{at.name} header", "query": f"{at.name} query parameter",
                     "json": f"body field {at.name}"}.get(at.kind, at.name)
            raise VerificationError(
                core.MISSING_HEADER,
                f"The request has no {where} ({what}). Check that the provider signs its webhooks and that "
                "nothing between it and us (a proxy) strips it.",
                header=at.name,
            )
        return value.strip()

    def matches(self, condition: Condition) -> bool:
        if condition.location is None:
            return self.request.method == condition.value
        value = self.raw(condition.location)
        if condition.absent:
            return value is None
        if condition.value is None:
            return value is not None
        if isinstance(value, list):
            return condition.value == ("[]" if not value else "[...]")
        return as_text(value) == condition.value


class CatalogProvider(Provider):
    """What every catalog provider shares: its secret, event id and type, test markers, handshake."""

    entry: ClassVar[Entry]
    # For the diagnosis: presets of one scheme are one family, and only headers that name a provider
    # (not Authorization or a bare X-Signature) make a request look like it came from that provider.
    scheme_family: ClassVar[str]
    distinctive_headers: ClassVar[tuple[str, ...]]
    secretless_get: ClassVar[bool] = False
    # A handshake whose answer is computed with the secret (Braintree's bt_challenge).
    handshake_needs_secret: ClassVar[bool] = False

    def generate_secret(self) -> str:
        return random_secret() if self.entry.secret == "chosen" else core.SECRET_PENDING

    def validate_secret(self, secret: str) -> str:
        return pasted_secret(secret)

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        parsed = Parsed(request)
        shake = self.entry.handshake
        if shake is not None and all(parsed.matches(c) for c in shake.when):
            if shake.signed:
                self.check(parsed, secret, now)
            return self._handshake(parsed)
        self.check(parsed, secret, now)
        event_id, fingerprint = self._ids(parsed)
        event_type, _ = _located(parsed, self.entry.event_type, self.entry.event_type_also)
        return Verified(
            event_id=event_id,
            fingerprint=fingerprint,
            event_type=event_type,
            is_test=any(parsed.matches(c) for c in self.entry.test),
        )

    def _ids(self, parsed: Parsed) -> tuple[str | None, str | None]:
        """The event id, and when the signature does not cover it, the body's fingerprint beside it (a
        request replayed under a fresh id is still one delivery)."""
        event_id, at = self._event_id(parsed)
        if event_id is None or at is None or self._is_signed(at):
            return event_id, None
        return event_id, body_fingerprint(parsed.request.body)

    def _is_signed(self, at: Location) -> bool:
        signed = self.signed_locations()
        return at.render() in signed or (at.kind == "json" and "json:" in signed)

    def check(self, parsed: Parsed, secret: str, now: float) -> None:
        raise NotImplementedError

    def signed_locations(self) -> frozenset[str]:
        """Locations covered by the signature (``json:`` is, whenever the body is signed)."""
        return frozenset()

    def _event_id(self, parsed: Parsed) -> tuple[str | None, Location | None]:
        """The provider's id and where it was found; without one, the body's fingerprint (and no location)."""
        value, at = _located(parsed, self.entry.event_id, self.entry.event_id_also)
        if value:
            return f"{self.entry.id}:{value}", at
        # An empty body (Google Drive's notifications) is no fingerprint: each one is counted.
        return (body_fingerprint(parsed.request.body) if parsed.request.body else None), None

    def _handshake(self, parsed: Parsed) -> Verified:
        shake = self.entry.handshake
        assert shake is not None
        token = ""
        if shake.token is not None:
            token = echo_token(parsed.get(shake.token), shake.token.name)
        body, content_type = b"", "text/plain"
        if shake.reply == "text":
            body = token.encode()
        elif shake.reply == "json":
            import orjson

            body, content_type = orjson.dumps(_fill(shake.reply_json, token)), "application/json"
        headers = {"X-Content-Type-Options": "nosniff", **{k: v.replace("{token}", token)
                                                            for k, v in shake.reply_headers.items()}}
        return Verified(
            event_id=token_id(f"{self.entry.id}-{shake.event_type}", token or body_fingerprint(parsed.request.body)),
            event_type=shake.event_type,
            is_test=True,
            handshake=True,
            # Unsigned, anyone with the URL can send it: answered and recorded as reachable, never verified.
            reachable_only=not shake.signed,
            reply=HandshakeReply(status=shake.reply_status, body=body, content_type=content_type, headers=headers),
        )


def _located(parsed: Parsed, first: Location | None, also: tuple[Location, ...]) -> tuple[str | None, Location | None]:
    """The first present value among ``first`` and ``also``, and where it was."""
    for at in (first, *also) if first is not None else ():
        value = parsed.get(at)
        if value:
            return value, at
    return None, None


def _bounded(value: str, name: str) -> None:
    if len(value) > core.MAX_HEADER_CHARS:
        raise VerificationError(core.HEADER_TOO_LONG, f"The {name} value is longer than {core.MAX_HEADER_CHARS} "
                                "characters.", header=name)


def _fill(template: Any, token: str) -> Any:
    if isinstance(template, dict):
        return {k: _fill(v, token) for k, v in template.items()}
    if isinstance(template, str):
        return token if template == "{token}" else template
    return template


def _key(secret: str, how: str) -> bytes:
    try:
        if how == "hex":
            return bytes.fromhex(secret)
        if how == "base64":
            return base64.b64decode(secret, validate=True)
        if how == "whsec":
            return base64.b64decode(secret.split("_", 1)[1] if secret.startswith("whsec_") else secret, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise VerificationError(
            "secret_format", f"The connection's secret is not valid {how}, as this provider writes it. "
            "Paste it again exactly as the provider shows it."
        ) from exc
    return secret.encode()


def _decode(value: str, encoding: str, what: str) -> bytes:
    if encoding == "hex":
        return core.decode_hex(value, what)
    if encoding == "base64url":
        padded = value + "=" * (-len(value) % 4)
        if not re.fullmatch(r"[A-Za-z0-9_-]+=*", padded):
            raise VerificationError(core.MALFORMED_SIGNATURE, f"The {what} is not valid base64url.")
        return base64.urlsafe_b64decode(padded)
    return core.decode_b64(value, what)


def _timestamp_s(raw: str, unit: str, what: str) -> float:
    if unit == "rfc3339":
        # Nanoseconds (Twitch) are more digits than Python reads: keep microseconds.
        text = re.sub(r"(\.\d{6})\d+", r"\1", raw.strip().replace("Z", "+00:00"))
        try:
            return datetime.fromisoformat(text).timestamp()
        except ValueError as exc:
            raise VerificationError(core.MALFORMED_TIMESTAMP, f"The {what} is not an RFC 3339 time.") from exc
    return core.parse_timestamp(raw, what, millis=unit == "ms")


class SignedFamily(CatalogProvider):
    """Families that sign a template (HMAC, Ed25519, ECDSA): reading the signatures and the timestamp,
    building the signed bytes, then judging the timestamp after the signature."""

    def signed_locations(self) -> frozenset[str]:
        sig = self.entry.signature
        assert sig is not None
        names = set(PLACEHOLDER.findall(sig.template))
        if "body" in names:
            names.add("json:")
        return frozenset(names)

    def signature_in(self, parsed: Parsed) -> Signature:
        """The entry's signature, or its legacy form when only the legacy one is present."""
        sig = self.entry.signature
        assert sig is not None
        legacy = sig.legacy
        if legacy is None or any(parsed.get(at) for at in sig.at) or not parsed.get(legacy.at):
            return sig
        return replace(sig, at=(legacy.at,), algorithm=legacy.algorithm, prefix=legacy.prefix, separator="",
                       kv_signature="", kv_timestamp="", legacy=None)

    def candidates(self, parsed: Parsed, sig: Signature) -> tuple[list[str], str | None]:
        """The signature values present (any may match) and the timestamp from a k=v header, if any."""
        present = [(at, parsed.get(at)) for at in sig.at]
        found = [(at, v.strip()) for at, v in present if v and v.strip()]
        if not found:
            parsed.require(sig.at[0], "the signature")
        for at, raw in found:
            _bounded(raw, at.name)
        values: list[str] = []
        stamp: str | None = None
        for at, raw in found:
            if sig.kv_signature:
                pairs = key_values(raw, at.name, sig.separator or ",")
                values += values_of(pairs, sig.kv_signature)
                if sig.kv_timestamp:
                    stamps = values_of(pairs, sig.kv_timestamp)
                    stamp = stamps[0] if stamps else None
                continue
            parts = raw.split(sig.separator) if sig.separator else [raw]
            for part in (p.strip() for p in parts if p.strip()):
                values.append(core.after_prefix(part, sig.prefix, at.name) if sig.prefix else part)
        if not values:
            raise VerificationError(
                core.MALFORMED_SIGNATURE, f"The {found[0][0].name} value has no '{sig.kv_signature}=' signature.",
                header=found[0][0].name,
            )
        core.check_signature_count(len(values), found[0][0].name)  # each one may cost a check of the body
        return values, stamp

    def read_timestamp(self, parsed: Parsed, kv_stamp: str | None) -> tuple[str, float | None]:
        t = self.entry.timestamp
        if t is None:
            return "", None
        if t.at.kind == "kv":
            if kv_stamp is None:
                raise VerificationError(core.MALFORMED_SIGNATURE,
                                        f"The signature has no '{t.at.name}=' timestamp part.")
            raw = kv_stamp
        else:
            raw = parsed.require(t.at, "the signed timestamp")
        return raw, _timestamp_s(raw, t.unit, f"{t.at.name} timestamp")

    def signed_bytes(self, parsed: Parsed, raw_ts: str) -> bytes:
        sig = self.entry.signature
        assert sig is not None
        request = parsed.request
        out, last = bytearray(), 0
        for match in PLACEHOLDER.finditer(sig.template):
            out += sig.template[last : match.start()].encode()
            name = match.group(1)
            if name == "body":
                out += request.body
            elif name == "timestamp":
                out += raw_ts.encode()
            elif name == "url":
                out += request.url.encode()
            elif name == "method":
                out += request.method.encode()
            else:
                kind, _, rest = name.partition(":")
                out += parsed.require(Location(kind, rest), "a signed value").encode()
            last = match.end()
        return bytes(out + sig.template[last:].encode())

    def check(self, parsed: Parsed, secret: str, now: float) -> None:
        sig = self.signature_in(parsed)
        values, kv_stamp = self.candidates(parsed, sig)
        raw_ts, timestamp = self.read_timestamp(parsed, kv_stamp)
        self.check_signature(self.signed_bytes(parsed, raw_ts), values, secret, sig)
        if timestamp is not None:  # after the signature: a timestamp error means a replay or a skewed clock
            assert self.entry.timestamp is not None
            core.check_tolerance(timestamp, now, self.entry.timestamp.tolerance_s)

    def check_signature(self, signed: bytes, values: list[str], secret: str, sig: Signature) -> None:
        raise NotImplementedError


class HmacFamily(SignedFamily):
    def check_signature(self, signed: bytes, values: list[str], secret: str, sig: Signature) -> None:
        given = self._decoded(sig, values)
        expected = core.hmac_digest(_key(secret, sig.key), signed, sig.algorithm)  # type: ignore[arg-type]
        if not core.any_matches(expected, given):
            raise core.mismatch(self.entry.mismatch_hint)

    @staticmethod
    def _decoded(sig: Signature, values: list[str]) -> list[bytes]:
        """Every value that decodes; none decoding at all is a malformed signature."""
        decoded: list[bytes] = []
        first_error: VerificationError | None = None
        for value in values:
            try:
                decoded.append(_decode(value, sig.encoding, "signature"))
            except VerificationError as exc:
                first_error = first_error or exc
        if not decoded:
            assert first_error is not None
            raise first_error
        return decoded


class PublicKeyFamily(SignedFamily):
    """A family whose secret field holds the provider's public key: checked when pasted, never generated
    here (the provider shows it)."""

    def validate_secret(self, secret: str) -> str:
        value = pasted_secret(secret)
        try:
            self._public_key(value)
        except VerificationError as exc:
            raise SettingsError(exc.message, field="secret") from exc
        return value

    def generate_secret(self) -> str:
        return core.SECRET_PENDING

    mismatch_hint = "Paste the provider's current public key."

    def _public_key(self, secret: str) -> Any:
        raise NotImplementedError

    def _verify(self, key: Any, given: bytes, signed: bytes) -> None:
        """Raise ``InvalidSignature`` unless ``given`` signs ``signed`` under ``key``."""
        raise NotImplementedError

    def check_signature(self, signed: bytes, values: list[str], secret: str, sig: Signature) -> None:
        key = self._public_key(secret)
        for given in HmacFamily._decoded(sig, values):
            try:
                self._verify(key, given, signed)
                return
            except InvalidSignature:
                continue
        raise core.mismatch(self.entry.mismatch_hint or self.mismatch_hint)


class Ed25519Family(PublicKeyFamily):
    """The secret field holds the provider's public key (hex or base64, per ``signature.key``)."""

    def _public_key(self, secret: str) -> Ed25519PublicKey:
        sig = self.entry.signature
        assert sig is not None
        raw = _key(secret, sig.key)
        if len(raw) != 32:
            raise VerificationError("secret_format", "An Ed25519 public key is 32 bytes; paste the provider's "
                                    "public key exactly as shown.")
        return Ed25519PublicKey.from_public_bytes(raw)

    def _verify(self, key: Ed25519PublicKey, given: bytes, signed: bytes) -> None:
        key.verify(given, signed)


class EcdsaFamily(PublicKeyFamily):
    """ECDSA P-256 with SHA-256; the secret field holds the provider's public key (DER, base64)."""

    mismatch_hint = "Paste the provider's current verification key."

    def _public_key(self, secret: str) -> ec.EllipticCurvePublicKey:
        sig = self.entry.signature
        assert sig is not None
        try:
            key = load_der_public_key(_key(secret, sig.key))
        except ValueError as exc:
            raise VerificationError("secret_format", "The connection's public key is not a DER public key "
                                    "(base64); paste the verification key exactly as shown.") from exc
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise VerificationError("secret_format", "The connection's public key is not an ECDSA P-256 key.")
        return key

    def _verify(self, key: ec.EllipticCurvePublicKey, given: bytes, signed: bytes) -> None:
        key.verify(given, signed, ec.ECDSA(hashes.SHA256()))


class JwtFamily(CatalogProvider):
    """A JWT signed with HS256 and the shared secret; optionally a claim with the body's SHA-256."""

    def signed_locations(self) -> frozenset[str]:
        spec = self.entry.jwt
        return frozenset({"json:"}) if spec and spec.body_hash_claim else frozenset()

    def check(self, parsed: Parsed, secret: str, now: float) -> None:
        spec = self.entry.jwt
        assert spec is not None
        raw = parsed.require(spec.at, "the signed token")
        if spec.scheme:
            scheme, _, raw = raw.partition(" ")
            if scheme.lower() != spec.scheme.lower() or not raw.strip():
                raise VerificationError(core.MALFORMED_SIGNATURE,
                                        f"The {spec.at.name} value must look like '{spec.scheme} <token>'.")
        elif raw.lower().startswith("bearer "):
            raw = raw[len("bearer "):]
        claims = self._decode(raw.strip(), secret, now)
        if spec.issuer and claims.get("iss") != spec.issuer:
            raise core.mismatch(f"The token's issuer is not {spec.issuer!r}.")
        if spec.body_hash_claim:
            given = claims.get(spec.body_hash_claim)
            expected = hashlib.sha256(parsed.request.body).hexdigest()
            if not isinstance(given, str) or not core.constant_time_equal(given.lower().encode(), expected.encode()):
                raise core.mismatch("The token is genuine but was issued for another body (its "
                                    f"{spec.body_hash_claim} claim differs): the body was changed on the way.")
        if spec.max_age_s and isinstance(claims.get("iat"), (int, float)):
            core.check_tolerance(float(claims["iat"]), now, spec.max_age_s)

    @staticmethod
    def _decode(token: str, secret: str, now: float) -> dict[str, Any]:
        try:
            header = pyjwt.get_unverified_header(token)
        except pyjwt.PyJWTError as exc:
            raise VerificationError(core.MALFORMED_SIGNATURE, "The signed token is not a JWT.") from exc
        if header.get("alg") != "HS256":
            raise VerificationError(core.MALFORMED_SIGNATURE, "The token is not signed with HS256.")
        try:
            with warnings.catch_warnings():  # the provider chose the key's length, not us: no warning per request
                warnings.filterwarnings("ignore", message=".*HMAC key.*")
                claims: dict[str, Any] = pyjwt.decode(
                    token, secret, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False,
                                                                  "verify_nbf": False, "verify_aud": False},
                )
        except pyjwt.InvalidSignatureError as exc:
            raise core.mismatch() from exc
        except pyjwt.PyJWTError as exc:
            raise VerificationError(core.MALFORMED_SIGNATURE, "The signed token could not be read.") from exc
        exp = claims.get("exp")
        if isinstance(exp, (int, float)) and now > exp + 60:
            raise VerificationError(core.TIMESTAMP_TOO_OLD, "The signed token has expired: a replay of an old "
                                    "delivery, or the sender's clock is wrong.", skew_s=int(now - exp))
        return claims


def _usable(secret: str) -> None:
    """A secret compared as it is sent must be one a stranger cannot guess: never shorter than what
    ``validate_secret`` stores (a secret that short can only come from somewhere else)."""
    if len(secret) < MIN_SECRET_CHARS:
        raise VerificationError("secret_format", "The connection's secret is too short to be compared as a token; "
                                "reconnect with the secret the provider shows.")


class TokenFamily(CatalogProvider):
    """A value the sender repeats on every request, equal to the connection's secret (constant time).
    It proves the sender knows the secret, not that the body is unchanged."""

    def check(self, parsed: Parsed, secret: str, now: float) -> None:
        at = self.entry.token_at
        assert at is not None
        _usable(secret)
        given = parsed.require(at, "the shared token")
        if not core.constant_time_equal(hashlib.sha256(given.encode()).digest(),
                                        hashlib.sha256(secret.encode()).digest()):
            raise core.mismatch(self.entry.mismatch_hint or "The token the sender repeats differs from this "
                                "connection's secret.")


class BasicFamily(CatalogProvider):
    """HTTP Basic credentials in the webhook URL's settings; the secret is ``user:password``."""

    def validate_secret(self, secret: str) -> str:
        value = pasted_secret(secret)
        if ":" not in value:
            raise SettingsError("the secret must be 'username:password', as entered in the provider", field="secret")
        return value

    def generate_secret(self) -> str:
        return "hookstatus:" + _secrets.token_urlsafe(24) if self.entry.secret == "chosen" else core.SECRET_PENDING

    def check(self, parsed: Parsed, secret: str, now: float) -> None:
        _usable(secret)
        raw = parsed.require(Location("header", "Authorization"), "Basic credentials")
        scheme, _, encoded = raw.partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            raise VerificationError(core.MALFORMED_SIGNATURE, "The Authorization header is not 'Basic <base64>'.",
                                    header="Authorization")
        given = core.decode_b64(encoded.strip(), "Authorization value")
        if not core.constant_time_equal(hashlib.sha256(given).digest(), hashlib.sha256(secret.encode()).digest()):
            raise core.mismatch("The username or password the sender uses differs from this connection's.")


class StandardFamily(CatalogProvider):
    """Standard Webhooks under the provider's header names; the key as the provider writes it."""

    _standard: ClassVar[StandardWebhooks]

    def generate_secret(self) -> str:
        if self.entry.secret == "chosen":
            return self._standard.generate_secret()
        return core.SECRET_PENDING

    def validate_secret(self, secret: str) -> str:
        if self.entry.signature is not None and self.entry.signature.key == "utf8-base64":
            return pasted_secret(secret)
        return self._standard.validate_secret(secret)

    def signed_locations(self) -> frozenset[str]:
        return frozenset({"json:", *(f"header:{p}id" for p in self.entry.header_prefixes)})

    def check(self, parsed: Parsed, secret: str, now: float) -> None:
        if self.entry.signature is not None and self.entry.signature.key == "utf8-base64":
            secret = "whsec_" + base64.b64encode(secret.encode()).decode()  # the raw secret is the key
        self._standard.verify(parsed.request, secret, {}, now)

    def _ids(self, parsed: Parsed) -> tuple[str | None, str | None]:
        for prefix in self.entry.header_prefixes:  # the message id is signed
            value = parsed.request.headers.get(f"{prefix}id")
            if value:
                return f"{self.entry.id}:{value}", None
        return super()._ids(parsed)


FAMILY_CLASSES: dict[str, type[CatalogProvider]] = {
    "hmac": HmacFamily,
    "ed25519": Ed25519Family,
    "ecdsa": EcdsaFamily,
    "jwt": JwtFamily,
    "token": TokenFamily,
    "basic": BasicFamily,
    "standard-webhooks": StandardFamily,
}


def info_of(entry: Entry) -> ProviderInfo:
    headers = list(entry.headers)
    if entry.signature:
        headers += [a.name for a in entry.signature.at if a.kind == "header"]
        if entry.signature.legacy is not None and entry.signature.legacy.at.kind == "header":
            headers.append(entry.signature.legacy.at.name)
    if entry.timestamp and entry.timestamp.at.kind == "header":
        headers.append(entry.timestamp.at.name)
    if entry.jwt and entry.jwt.at.kind == "header":
        headers.append(entry.jwt.at.name)
    if entry.token_at and entry.token_at.kind == "header":
        headers.append(entry.token_at.name)
    if entry.family == "basic":
        headers.append("Authorization")
    for prefix in entry.header_prefixes:
        headers += [f"{prefix}id", f"{prefix}timestamp", f"{prefix}signature"]
    for at in (entry.event_id, entry.event_type, *entry.event_id_also, *entry.event_type_also):
        if at is not None and at.kind == "header":
            headers.append(at.name)
    return ProviderInfo(
        name=entry.id,
        title=entry.title,
        headers=tuple(dict.fromkeys(headers)),
        scheme=entry.scheme,
        handshake=entry.handshake.description if entry.handshake else None,
        secret_format=entry.secret_format,
        settings={},
        test_instructions=entry.test_instructions,
        category=entry.category,
        setup=entry.setup,
        docs_url=entry.docs,
        checked_against=entry.checked_against,
    )


GENERIC_HEADERS = frozenset({
    "authorization", "content-type", "signature", "x-signature", "x-hub-signature", "webhook-id", "webhook-timestamp",
    "webhook-signature", "svix-id", "svix-timestamp", "svix-signature", "x-event-id", "x-topic",
})


def scheme_family(entry: Entry) -> str:
    """Entries that verify exactly alike share a key (several senders sign as Standard Webhooks, or
    'sha256=' + hex HMAC in X-Hub-Signature)."""
    if entry.family == "standard-webhooks":
        return "standard-webhooks"
    if entry.family == "hmac" and entry.signature is not None:
        s = entry.signature
        legacy = f":{s.legacy.at.render()}:{s.legacy.algorithm}:{s.legacy.prefix}" if s.legacy else ""
        return f"hmac:{[a.render() for a in s.at]}:{s.template}:{s.algorithm}:{s.encoding}:{s.prefix}:{s.key}{legacy}"
    return entry.id


def provider_class(entry: Entry, base: type[CatalogProvider] | None = None) -> type[CatalogProvider]:
    """The adapter class for one entry: its family's class (or ``base``) with the entry's data."""
    family = base or FAMILY_CLASSES[entry.family]
    methods = ["POST"]
    if entry.handshake is not None and entry.handshake.method and entry.handshake.method != "POST":
        methods.insert(0, entry.handshake.method)
    attrs: dict[str, Any] = {
        "entry": entry,
        "info": info_of(entry),
        "methods": tuple(methods),
        "scheme_family": scheme_family(entry) if base is None else entry.id,
        "handshake_proof": None if entry.handshake is None else ("secret" if entry.handshake.signed else "nothing"),
        "distinctive_headers": tuple(h for h in info_of(entry).headers if h.lower() not in GENERIC_HEADERS),
        # An unsigned GET handshake is answered before the secret is pasted (the provider will not save
        # the URL until it is answered, and answering it proves nothing either way).
        "secretless_get": bool(entry.handshake and not entry.handshake.signed and not family.handshake_needs_secret
                               and entry.handshake.method in ("GET", "HEAD")),
    }
    if entry.timestamp is not None:
        attrs["tolerance_s"] = entry.timestamp.tolerance_s
    if family is StandardFamily:
        prefixes = entry.header_prefixes

        class _Standard(StandardWebhooks):
            header_prefixes: ClassVar[tuple[str, ...]] = prefixes

        attrs["_standard"] = _Standard()
    name = "Catalog_" + re.sub(r"\W", "_", entry.id)
    return type(name, (family,), attrs)
