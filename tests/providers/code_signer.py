"""Signing requests for the providers whose adapters are code (not a catalog family), the way each
provider's documentation describes it, written out with ``hmac``/``hashlib``: never with the adapters'
own code. The same knobs as ``catalog_signer.Signer`` (``conn_secret``, ``with_url``, ``request(...,
skew_s=, signed_with=, headers=)``), plus what the diagnosis tests need: where the signature is
(``signature_header``), a value that cannot be read (``malformed``), whether a timestamp is signed
(``timed``) and the settings a connection needs (``settings``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson

from tests.providers.catalog_signer import Request

# provider -> (signature header, a malformed value, timestamp signed?)
SHAPES: dict[str, tuple[str, str | None, bool]] = {
    "github": ("X-Hub-Signature-256", "sha256=zz", False),
    "shopify": ("X-Shopify-Hmac-Sha256", "not*base64", False),
    "square": ("x-square-hmacsha256-signature", "not*base64", False),
    "linear": ("Linear-Signature", "zz", True),
    "stripe": ("Stripe-Signature", "no-key-value-pairs", True),
    "slack": ("X-Slack-Signature", "v0=zz", True),
    "zoom": ("x-zm-signature", "v0=zz", True),
    "meta": ("X-Hub-Signature-256", "sha256=zz", False),
    "hubspot": ("X-HubSpot-Signature-v3", "not*base64", True),
    "calendly": ("Calendly-Webhook-Signature", "no-key-value-pairs", True),
    "dropbox": ("X-Dropbox-Signature", "zz", False),
    "twitter": ("x-twitter-webhooks-signature", "sha256=not*base64", False),
    "asana": ("X-Hook-Signature", "zz", False),
    "svix": ("svix-signature", "v1,not*base64", True),
    "standard-webhooks": ("webhook-signature", "v1,not*base64", True),
    "generic-hmac-sha256": ("X-Signature-256", "sha256=zz", False),
    "generic-hmac": ("X-Acme-Signature", "zz", True),
    "twilio": ("X-Twilio-Signature", "not*base64", False),
    "msgraph": ("clientState", None, False),  # Graph signs nothing: the body's clientState is the proof
    "braintree": ("bt_signature", None, False),  # form fields; malformed: a public key with a non-hex value
    "adyen": ("hmacSignature", "not*base64", False),  # in each notification item of the body
    "contentful": ("x-contentful-signature", "zz", True),
}
GENERIC_HMAC_SETTINGS = {"header": "X-Acme-Signature", "timestamp_header": "X-Acme-Timestamp"}


@dataclass(frozen=True)
class Signed:
    """What one request is signed from."""

    secret: str
    key: bytes
    ts: str
    now: float
    body: bytes
    url: str

    def mac(self, message: bytes, algorithm: str = "sha256") -> bytes:
        return _hmac(self.key, message, algorithm)


def _v0(signed: Signed, names: tuple[str, str]) -> dict[str, str]:
    return {names[0]: "v0=" + signed.mac(f"v0:{signed.ts}:".encode() + signed.body).hex(), names[1]: signed.ts}


def _t_v1(signed: Signed) -> str:
    return f"t={signed.ts},v1={signed.mac(f'{signed.ts}.'.encode() + signed.body).hex()}"


def _standard(signed: Signed, prefix: str) -> dict[str, str]:
    msg_id = f"msg_{uuid.uuid4().hex}"
    raw_key = base64.b64decode(signed.secret.removeprefix("whsec_"))
    mac = _hmac(raw_key, f"{msg_id}.{signed.ts}.".encode() + signed.body)
    return {f"{prefix}id": msg_id, f"{prefix}timestamp": signed.ts, f"{prefix}signature": "v1," + _b64(mac)}


def _hubspot(signed: Signed) -> dict[str, str]:
    millis = str(int(signed.now * 1000))
    mac = signed.mac(f"POST{signed.url}".encode() + signed.body + millis.encode())
    return {"X-HubSpot-Signature-v3": _b64(mac), "X-HubSpot-Request-Timestamp": millis}


def _contentful(signed: Signed) -> dict[str, str]:
    from tests.providers.test_catalog_sdks import _contentful_headers

    return _contentful_headers(signed.secret, signed.url, signed.body, skew_s=signed.now - time.time())


HEADERS: dict[str, Callable[[Signed], dict[str, str]]] = {
    "github": lambda s: {"X-Hub-Signature-256": "sha256=" + s.mac(s.body).hex(), "X-GitHub-Event": "push",
                         "X-GitHub-Delivery": str(uuid.uuid4())},
    "shopify": lambda s: {"X-Shopify-Hmac-Sha256": _b64(s.mac(s.body)), "X-Shopify-Topic": "orders/create",
                          "X-Shopify-Shop-Domain": "hookstatus-test.myshopify.com",
                          "X-Shopify-API-Version": "2024-10", "X-Shopify-Webhook-Id": str(uuid.uuid4()),
                          "X-Shopify-Event-Id": str(uuid.uuid4())},
    "square": lambda s: {"x-square-hmacsha256-signature": _b64(s.mac(s.url.encode() + s.body))},
    "linear": lambda s: {"Linear-Signature": s.mac(s.body).hex(), "Linear-Delivery": str(uuid.uuid4()),
                         "Linear-Event": "Issue"},
    "stripe": lambda s: {"Stripe-Signature": _t_v1(s)},
    "slack": lambda s: _v0(s, ("X-Slack-Signature", "X-Slack-Request-Timestamp")),
    "zoom": lambda s: _v0(s, ("x-zm-signature", "x-zm-request-timestamp")),
    "meta": lambda s: {"X-Hub-Signature-256": "sha256=" + s.mac(s.body).hex()},
    "hubspot": _hubspot,
    "calendly": lambda s: {"Calendly-Webhook-Signature": _t_v1(s)},
    "dropbox": lambda s: {"X-Dropbox-Signature": s.mac(s.body).hex()},
    "twitter": lambda s: {"x-twitter-webhooks-signature": "sha256=" + _b64(s.mac(s.body))},
    "asana": lambda s: {"X-Hook-Signature": s.mac(s.body).hex()},
    "svix": lambda s: _standard(s, "svix-"),
    "standard-webhooks": lambda s: _standard(s, "webhook-"),
    "generic-hmac-sha256": lambda s: {"X-Signature-256": "sha256=" + s.mac(s.body).hex()},
    "generic-hmac": lambda s: {"X-Acme-Signature": s.mac(f"{s.ts}.".encode() + s.body).hex(),
                               "X-Acme-Timestamp": s.ts},
    "contentful": _contentful,
}


def _hmac(key: bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(key, message, getattr(hashlib, algorithm)).digest()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _secret(provider: str) -> str:
    if provider == "stripe":
        return "whsec_" + secrets.token_urlsafe(24)
    if provider in ("svix", "standard-webhooks"):
        return "whsec_" + _b64(secrets.token_bytes(24))
    if provider == "braintree":
        return f"pub_{secrets.token_hex(4)}:{secrets.token_hex(16)}"
    if provider in ("adyen", "contentful"):
        return secrets.token_hex(32)  # Adyen: a hex HMAC key; Contentful: 64 characters
    return "sk_" + secrets.token_urlsafe(24)


@dataclass
class CodeSigner:
    provider: str
    url: str = "http://127.0.0.1/hooks/x"
    conn_secret: str = ""
    client_state: str = field(default_factory=lambda: "cs-" + secrets.token_hex(8))

    def __post_init__(self) -> None:
        self.conn_secret = self.conn_secret or _secret(self.provider)

    @classmethod
    def other(cls, provider: str) -> CodeSigner:
        return cls(provider)

    def with_url(self, url: str) -> CodeSigner:
        self.url = url
        return self

    @property
    def signature_header(self) -> str:
        return SHAPES[self.provider][0]

    @property
    def malformed(self) -> str | None:
        return SHAPES[self.provider][1]

    @property
    def timed(self) -> bool:
        return SHAPES[self.provider][2]

    @property
    def settings(self) -> dict[str, Any]:
        if self.provider == "meta":
            return {"verify_token": "verify-" + secrets.token_hex(4)}
        if self.provider == "generic-hmac":
            return dict(GENERIC_HMAC_SETTINGS)
        if self.provider == "msgraph":
            return {"client_state": self.client_state}
        return {}

    def request(self, body: dict[str, Any] | None = None, *, skew_s: float = 0,
                signed_with: CodeSigner | None = None, headers: dict[str, str] | None = None,
                stamped: bool = True) -> Request:
        signer = signed_with or self
        data = dict(body or {"id": f"evt_{uuid.uuid4().hex[:12]}", "type": "catalog.test", "amount": 1999})
        now = time.time() + skew_s
        req = self._build(data, signer, now, stamped)
        req.headers.update(headers or {})
        return req

    def _build(self, data: dict[str, Any], signer: CodeSigner, now: float, stamped: bool) -> Request:
        special = {"twilio": self._twilio, "braintree": self._braintree, "adyen": self._adyen,
                   "msgraph": self._msgraph}.get(self.provider)
        if special is not None:
            return special(signer)
        if self.provider == "linear" and stamped:
            data["webhookTimestamp"] = int(now * 1000)
        body = orjson.dumps(data)
        if self.provider == "hubspot":  # HubSpot posts a list of events
            body = orjson.dumps([{"eventId": secrets.randbelow(10**9), "subscriptionType": "contact.creation",
                                  "amount": 1999}])
        signed = Signed(signer.conn_secret, signer.conn_secret.encode(), str(int(now)), now, body, self.url)
        return Request(body, {"Content-Type": "application/json", **HEADERS[self.provider](signed)})

    def _twilio(self, signer: CodeSigner) -> Request:
        params = {"CallSid": "CA" + uuid.uuid4().hex, "Digits": "1"}
        signed = self.url + "".join(k + params[k] for k in sorted(params))
        mac = _b64(_hmac(signer.conn_secret.encode(), signed.encode(), "sha1"))
        return Request(urlencode(params).encode(), {"Content-Type": "application/x-www-form-urlencoded",
                                                    "X-Twilio-Signature": mac})

    def _msgraph(self, signer: CodeSigner) -> Request:
        item = {"subscriptionId": str(uuid.uuid4()), "changeType": "created", "clientState": signer.client_state,
                "resource": "Users/1/messages/2"}
        return Request(orjson.dumps({"value": [item]}), {"Content-Type": "application/json"})

    def _braintree(self, signer: CodeSigner) -> Request:
        private = signer.conn_secret.partition(":")[2]
        public = self.conn_secret.partition(":")[0]  # another private key under the merchant's public key
        xml = "<notification><kind>check</kind><timestamp>2024-01-01T00:00:00Z</timestamp></notification>\n"
        payload = _b64(xml.encode()) + "\n"
        mac = _hmac(hashlib.sha1(private.encode()).digest(), payload.encode(), "sha1").hex()
        form = urlencode({"bt_signature": f"{public}|{mac}", "bt_payload": payload})
        return Request(form.encode(), {"Content-Type": "application/x-www-form-urlencoded"})

    def _adyen(self, signer: CodeSigner) -> Request:
        item: dict[str, Any] = {
            "amount": {"currency": "EUR", "value": 1999}, "eventCode": "AUTHORISATION",
            "merchantAccountCode": "TestMerchant", "merchantReference": "order-1", "originalReference": "",
            "pspReference": "PSP" + secrets.token_hex(6), "success": "true", "additionalData": {},
        }
        signed = ":".join([item["pspReference"], "", "TestMerchant", "order-1", "1999", "EUR", "AUTHORISATION",
                           "true"])
        item["additionalData"]["hmacSignature"] = _b64(_hmac(bytes.fromhex(signer.conn_secret), signed.encode()))
        return Request(orjson.dumps({"live": "false", "notificationItems": [{"NotificationRequestItem": item}]}),
                       {"Content-Type": "application/json"})


def without_signature(signer: CodeSigner, req: Request) -> Request:
    """The request with its signature (header, form field or body field) removed."""
    name = signer.signature_header
    if signer.provider == "braintree":
        return Request(b"bt_payload=" + req.body.split(b"bt_payload=", 1)[1], dict(req.headers))
    if signer.provider in ("adyen", "msgraph"):
        data = orjson.loads(req.body)
        for item in data.get("notificationItems", []):
            item["NotificationRequestItem"]["additionalData"].pop("hmacSignature")
        for item in data.get("value", []):
            item.pop("clientState")
        return Request(orjson.dumps(data), dict(req.headers))
    return Request(req.body, {k: v for k, v in req.headers.items() if k.lower() != name.lower()}, req.query,
                   req.method)


def with_malformed_signature(signer: CodeSigner, req: Request) -> Request | None:
    """The request with a signature that cannot be read, or None where no value can be malformed."""
    if signer.provider == "braintree":
        public = signer.conn_secret.partition(":")[0]
        form = urlencode({"bt_signature": f"{public}|zz", "bt_payload": "cGF5bG9hZA=="})
        return Request(form.encode(), dict(req.headers))
    if signer.malformed is None:
        return None
    if signer.provider == "adyen":
        data = orjson.loads(req.body)
        data["notificationItems"][0]["NotificationRequestItem"]["additionalData"]["hmacSignature"] = signer.malformed
        return Request(orjson.dumps(data), dict(req.headers))
    headers = {k: v for k, v in req.headers.items() if k.lower() != signer.signature_header.lower()}
    headers[signer.signature_header] = signer.malformed
    return Request(req.body, headers, req.query, req.method)
