"""Signing requests for catalog providers the way each catalog entry describes its provider's scheme
(header, signed template, algorithm, encoding, prefix, key form), written out with ``hmac``,
``cryptography`` and PyJWT directly: never with the adapters' own code.

``Signer(entry)`` holds the connection's secret (``conn_secret``) and what the sender signs with;
``request(...)`` builds one request as the provider sends it, with knobs for the rejection cases.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import jwt
import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from shared.providers.catalog_spec import Entry, Location

PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass
class Request:
    body: bytes
    headers: dict[str, str]
    query: str = ""
    method: str = "POST"


@dataclass
class Signer:
    entry: Entry
    url: str = "http://127.0.0.1/hooks/x"
    conn_secret: str = ""
    _material: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.conn_secret:
            self.conn_secret, self._material = make_secret(self.entry)

    @classmethod
    def other(cls, entry: Entry) -> Signer:
        """A sender holding another secret (or key) of the same form."""
        return cls(entry)

    def with_url(self, url: str) -> Signer:
        self.url = url
        return self

    # -- building ---------------------------------------------------------------------------------

    def body_dict(self) -> dict[str, Any]:
        return {"id": f"evt_{uuid.uuid4().hex[:12]}", "type": "catalog.test", "data": {"amount": 1999}}

    def request(self, body: dict[str, Any] | None = None, *, skew_s: float = 0, signed_with: Signer | None = None,
                headers: dict[str, str] | None = None) -> Request:
        """A request signed with ``signed_with``'s material (default: this signer's), ``skew_s`` away
        from now."""
        data = self.body_dict() if body is None else body
        signer = signed_with or self
        family = self.entry.family
        now = time.time() + skew_s
        if family in ("hmac", "ed25519", "ecdsa"):
            req = self._signed(data, signer, now)
        elif family == "standard-webhooks":
            req = self._standard(data, signer, now)
        elif family == "jwt":
            req = self._jwt(data, signer, now)
        elif family == "token":
            req = self._token(data, signer)
        else:
            req = self._basic(data, signer)
        req.headers.update(headers or {})
        return req

    def _signed(self, data: dict[str, Any], signer: Signer, now: float) -> Request:
        sig = self.entry.signature
        assert sig is not None
        headers = {"Content-Type": "application/json"}
        stamp = self._stamp(now)
        t = self.entry.timestamp
        if t is not None and t.at.kind == "header":
            headers[t.at.name] = stamp
        # Values the template signs from headers or the body: fill them in first.
        for name in PLACEHOLDER.findall(sig.template):
            kind, _, rest = name.partition(":")
            if kind == "header" and rest not in headers:
                headers[rest] = str(uuid.uuid4())
            elif kind == "json":
                _put(data, rest, stamp if t is not None and t.at.render() == name else uuid.uuid4().hex)
        if t is not None and t.at.kind == "json":  # a field of the signed body (Pusher's time_ms)
            _put(data, t.at.name, int(stamp) if stamp.isdigit() else stamp)
        body = orjson.dumps(data)
        signed = _fill(sig.template, body, stamp, self.url, headers, data)
        value = _encode(signer.raw_signature(signed), sig.encoding)
        if sig.kv_signature:
            parts = [f"{sig.kv_timestamp}={stamp}"] if sig.kv_timestamp else []
            value = (sig.separator or ",").join([*parts, f"{sig.kv_signature}={value}"])
        else:
            value = sig.prefix + value
        at = sig.at[0]
        query = ""
        if at.kind == "header":
            headers[at.name] = value
        elif at.kind == "query":
            query = urlencode({at.name: value})
        elif at.kind == "json":
            _put(data, at.name, value)
            body = orjson.dumps(data)
        return Request(body, headers, query)

    def raw_signature(self, signed: bytes) -> bytes:
        family = self.entry.family
        if family == "ed25519":
            return bytes(self._material.sign(signed))
        if family == "ecdsa":
            return bytes(self._material.sign(signed, ec.ECDSA(hashes.SHA256())))
        sig = self.entry.signature
        assert sig is not None
        return hmac.new(self._material, signed, getattr(hashlib, sig.algorithm)).digest()

    def _stamp(self, now: float) -> str:
        t = self.entry.timestamp
        if t is None:
            return str(int(now))
        if t.unit == "ms":
            return str(int(now * 1000))
        if t.unit == "rfc3339":
            return datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return str(int(now))

    def _standard(self, data: dict[str, Any], signer: Signer, now: float) -> Request:
        prefix = self.entry.header_prefixes[0]
        msg_id, stamp, body = f"msg_{uuid.uuid4().hex}", str(int(now)), orjson.dumps(data)
        mac = hmac.new(signer._material, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
        headers = {f"{prefix}id": msg_id, f"{prefix}timestamp": stamp,
                   f"{prefix}signature": "v1," + base64.b64encode(mac).decode(), "Content-Type": "application/json"}
        return Request(body, headers)

    def _jwt(self, data: dict[str, Any], signer: Signer, now: float) -> Request:
        spec = self.entry.jwt
        assert spec is not None
        body = orjson.dumps(data)
        claims: dict[str, Any] = {"iat": int(now), "jti": uuid.uuid4().hex}
        if spec.body_hash_claim:
            claims[spec.body_hash_claim] = hashlib.sha256(body).hexdigest()
        if spec.issuer:
            claims["iss"] = spec.issuer
        token = jwt.encode(claims, signer.conn_secret, algorithm="HS256")
        value = f"{spec.scheme} {token}" if spec.scheme else token
        return Request(body, {spec.at.name: value, "Content-Type": "application/json"})

    def _token(self, data: dict[str, Any], signer: Signer) -> Request:
        at = self.entry.token_at
        assert at is not None
        return Request(orjson.dumps(data), {at.name: signer.conn_secret, "Content-Type": "application/json"})

    def _basic(self, data: dict[str, Any], signer: Signer) -> Request:
        credentials = base64.b64encode(signer.conn_secret.encode()).decode()
        return Request(orjson.dumps(data), {"Authorization": f"Basic {credentials}",
                                            "Content-Type": "application/json"})

    # -- where the signature lives, for the missing/malformed cases --------------------------------

    def signature_location(self) -> Location:
        e = self.entry
        if e.signature is not None and e.family != "standard-webhooks":
            return e.signature.at[0]
        if e.jwt is not None:
            return e.jwt.at
        if e.token_at is not None:
            return e.token_at
        if e.family == "standard-webhooks":
            return Location("header", f"{e.header_prefixes[0]}signature")
        return Location("header", "Authorization")


def make_secret(entry: Entry) -> tuple[str, Any]:
    """(the connection's secret, what the sender signs with)."""
    family = entry.family
    if family == "ed25519":
        private = Ed25519PrivateKey.generate()
        raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        assert entry.signature is not None
        return (raw.hex() if entry.signature.key == "hex" else base64.b64encode(raw).decode()), private
    if family == "ecdsa":
        key = ec.generate_private_key(ec.SECP256R1())
        der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode(), key
    if family == "standard-webhooks":
        raw = secrets.token_bytes(32)
        if entry.signature is not None and entry.signature.key == "utf8-base64":
            text = "polar_whs_" + secrets.token_urlsafe(24)
            return text, text.encode()
        return "whsec_" + base64.b64encode(raw).decode(), raw
    if family == "basic":
        return f"user-{secrets.token_hex(3)}:{secrets.token_urlsafe(18)}", None
    key_form = entry.signature.key if entry.signature is not None else "utf8"
    if key_form == "hex":
        raw = secrets.token_bytes(32)
        return raw.hex(), raw
    if key_form == "base64":
        raw = secrets.token_bytes(32)
        return base64.b64encode(raw).decode(), raw
    text = "sk_" + secrets.token_urlsafe(24)
    return text, text.encode()


def _encode(raw: bytes, encoding: str) -> str:
    if encoding == "hex":
        return raw.hex()
    if encoding == "base64url":
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return base64.b64encode(raw).decode()


def _fill(template: str, body: bytes, stamp: str, url: str, headers: dict[str, str], data: dict[str, Any]) -> bytes:
    out, last = bytearray(), 0
    for match in PLACEHOLDER.finditer(template):
        out += template[last:match.start()].encode()
        name = match.group(1)
        kind, _, rest = name.partition(":")
        value = {"body": body, "timestamp": stamp.encode(), "url": url.encode(), "method": b"POST"}.get(name)
        if value is None:
            value = (headers[rest] if kind == "header" else str(_get(data, rest))).encode()
        out += value
        last = match.end()
    return bytes(out + template[last:].encode())


def _put(data: dict[str, Any], pointer: str, value: Any) -> None:
    steps = pointer.split("/")[1:]
    node: Any = data
    for step in steps[:-1]:
        node = node.setdefault(step, {})
    node[steps[-1]] = value


def _get(data: dict[str, Any], pointer: str) -> Any:
    node: Any = data
    for step in pointer.split("/")[1:]:
        node = node[step]
    return node
