"""One catalog entry, read and checked: a provider described by data instead of code.

The catalog (``shared/providers/catalog.toml``, plus an optional file named by
``PROVIDER_CATALOG_EXTRA``) is read once at start-up. Every entry is checked here; anything wrong is a
``ConfigError`` naming the entry and the field, so a bad preset stops the service before it serves.
The format is documented in docs/PROVIDERS.md ("Catalog format").

Locations (where a value is found) are written ``header:<Name>``, ``json:<JSON pointer>``,
``query:<name>`` or ``form:<name>`` (a field of a form-encoded body). Conditions add ``=<value>``
(equal) or nothing (present), ``!`` before means absent, and ``method=<VERB>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ConfigError

ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
FAMILIES = ("hmac", "standard-webhooks", "ed25519", "ecdsa", "jwt", "token", "basic")
CATEGORIES = (
    "payments", "commerce", "communication", "identity", "developer tools", "CRM & support", "HR",
    "e-signature", "storage", "email", "marketing", "productivity", "content", "scheduling", "forms",
    "infrastructure", "AI", "finance",
)
ALGORITHMS = ("sha1", "sha256", "sha512")
ENCODINGS = ("hex", "base64", "base64url")
KEYS = ("utf8", "base64", "hex", "whsec", "utf8-base64")
UNITS = ("s", "ms", "rfc3339")
CHECKED = ("sdk:", "vector:", "scheme:")
METHODS = ("GET", "POST", "HEAD")
REPLIES = ("text", "json", "empty")


@dataclass(frozen=True, slots=True)
class Location:
    kind: str  # header | json | query | form | kv (the signature header's own key=value parts)
    name: str

    def render(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True, slots=True)
class Condition:
    """``method=GET``, ``header:X`` (present), ``!header:X`` (absent), ``json:/type=1`` (equal, compared
    as text; ``=[]`` an empty list)."""

    location: Location | None  # None: the method
    value: str | None
    absent: bool = False


@dataclass(frozen=True, slots=True)
class Legacy:
    """An older signature the provider still sends alone for old subscriptions (Square's SHA-1 header):
    checked only when none of the signature's own locations is present."""

    at: Location
    algorithm: str = "sha1"
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class Signature:
    at: tuple[Location, ...]
    template: str = "{body}"
    algorithm: str = "sha256"
    encoding: str = "hex"
    prefix: str = ""
    key: str = "utf8"
    separator: str = ""  # several signatures in one value, any of which may match
    kv_signature: str = ""  # "v1": the value is k=v pairs and this key holds the signature
    kv_timestamp: str = ""  # "t": ... and this key the timestamp
    legacy: Legacy | None = None


@dataclass(frozen=True, slots=True)
class Timestamp:
    at: Location
    unit: str = "s"
    tolerance_s: int = 300


@dataclass(frozen=True, slots=True)
class Jwt:
    at: Location
    scheme: str = ""  # "Bearer": the value is "<scheme> <token>"
    body_hash_claim: str = ""  # a claim holding the hex SHA-256 of the body
    issuer: str = ""
    max_age_s: int = 0  # iat no older than this (0: not checked)


@dataclass(frozen=True, slots=True)
class Handshake:
    kind: str
    when: tuple[Condition, ...]
    signed: bool = False
    token: Location | None = None
    reply: str = "text"
    reply_status: int = 200
    reply_json: Mapping[str, Any] = field(default_factory=dict)
    reply_headers: Mapping[str, str] = field(default_factory=dict)
    event_type: str = "handshake"
    description: str = ""

    @property
    def method(self) -> str | None:
        return next((c.value for c in self.when if c.location is None), None)


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    title: str
    category: str
    family: str
    docs: str
    checked_against: str
    secret: str  # chosen (generated here when none is given) | issued (the provider shows it)
    secret_format: str
    setup: tuple[str, ...]
    test_instructions: str
    scheme: str
    signature: Signature | None = None
    timestamp: Timestamp | None = None
    jwt: Jwt | None = None
    token_at: Location | None = None
    header_prefixes: tuple[str, ...] = ()
    event_id: Location | None = None
    event_type: Location | None = None
    # Where to look next when the first location is absent (Shopify's two spellings of every header).
    event_id_also: tuple[Location, ...] = ()
    event_type_also: tuple[Location, ...] = ()
    test: tuple[Condition, ...] = ()
    handshake: Handshake | None = None
    headers: tuple[str, ...] = ()
    mismatch_hint: str = ""

    @property
    def checked_kind(self) -> str:
        return self.checked_against.partition(":")[0]


class _Reader:
    """Reads one entry's fields, raising a ``ConfigError`` that names the entry and the field."""

    def __init__(self, raw: Mapping[str, Any], where: str, source: str) -> None:
        self.raw, self.where, self.source = raw, where, source

    def fail(self, name: str, why: str) -> ConfigError:
        return ConfigError(f"{self.source}: provider {self.where}, field {name!r}: {why}")

    def text(self, name: str, default: str | None = None, *, choices: tuple[str, ...] = ()) -> str:
        value = self.raw.get(name, default)
        if value is None:
            raise self.fail(name, "is required")
        if not isinstance(value, str):
            raise self.fail(name, "must be a string")
        if choices and value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)} (got {value!r})")
        return value

    def number(self, name: str, default: int, low: int, high: int) -> int:
        value = self.raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(name, f"must be an integer from {low} to {high}")
        return int(value)

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.raw.get(name, default)
        if not isinstance(value, bool):
            raise self.fail(name, "must be true or false")
        return value

    def texts(self, name: str, *, required: bool = False) -> tuple[str, ...]:
        value = self.raw.get(name, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(name, "must be a string or a list of non-empty strings")
        if required and not value:
            raise self.fail(name, "must not be empty")
        return tuple(value)

    def table(self, name: str) -> _Reader | None:
        value = self.raw.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail(name, "must be a table")
        return _Reader(value, f"{self.where}.{name}", self.source)

    def location(self, name: str, value: str | None = None, *,
                 kinds: tuple[str, ...] = ("header", "json", "query", "form")) -> Location:
        raw = self.text(name) if value is None else value
        kind, sep, rest = raw.partition(":")
        if not sep or kind not in kinds or not rest:
            raise self.fail(name, f"{raw!r} must be one of {', '.join(k + ':<name>' for k in kinds)}")
        if kind == "header" and not HEADER.match(rest):
            raise self.fail(name, f"{rest!r} is not an HTTP header name")
        if kind == "json" and not rest.startswith("/"):
            raise self.fail(name, f"{rest!r} is not a JSON pointer (it starts with /)")
        return Location(kind, rest)

    def optional_location(self, name: str, **kw: Any) -> Location | None:
        return self.location(name, **kw) if name in self.raw else None

    def condition(self, name: str, raw: str) -> Condition:
        if raw.startswith("method="):
            method = raw[len("method="):]
            if method not in METHODS:
                raise self.fail(name, f"method must be one of {', '.join(METHODS)}")
            return Condition(None, method)
        if raw.startswith("!"):
            return Condition(self.location(name, raw[1:]), None, absent=True)
        where, sep, value = raw.partition("=")
        return Condition(self.location(name, where), value if sep else None)

    def conditions(self, name: str) -> tuple[Condition, ...]:
        return tuple(self.condition(name, raw) for raw in self.texts(name))

    def known(self, names: frozenset[str]) -> None:
        unknown = sorted(set(self.raw) - names)
        if unknown:
            raise self.fail(unknown[0], "is not a known field")


ENTRY_FIELDS = frozenset({
    "id", "title", "category", "family", "docs", "checked_against", "secret", "secret_format", "setup",
    "test_instructions", "scheme", "signature", "timestamp", "jwt", "token", "header_prefixes", "event_id",
    "event_type", "test", "handshake", "headers", "mismatch_hint",
})
SIGNATURE_FIELDS = frozenset({"at", "template", "algorithm", "encoding", "prefix", "key", "separator",
                              "kv_signature", "kv_timestamp", "legacy"})
HANDSHAKE_FIELDS = frozenset({"kind", "when", "signed", "token", "reply", "reply_status", "reply_json",
                              "reply_headers", "event_type", "description"})


def parse_entry(raw: Mapping[str, Any], index: int, source: str) -> Entry:
    name = raw.get("id") if isinstance(raw.get("id"), str) else f"#{index + 1}"
    r = _Reader(raw, repr(name), source)
    r.known(ENTRY_FIELDS)
    ident = r.text("id")
    if not ID.match(ident):
        raise r.fail("id", "must be lower-case letters, digits and dashes (at most 48)")
    family = r.text("family", choices=FAMILIES)
    docs = r.text("docs")
    if not docs.startswith("https://"):
        raise r.fail("docs", "must be an https:// link to the provider's documentation")
    checked = r.text("checked_against")
    if not checked.startswith(CHECKED) or len(checked.partition(":")[2]) < 2:
        raise r.fail("checked_against", "must be sdk:<package>, vector:<docs url> or scheme:<docs url>")
    signature = _signature(r)
    timestamp = _timestamp(r, signature)
    entry = Entry(
        id=ident,
        title=r.text("title"),
        category=r.text("category", choices=CATEGORIES),
        family=family,
        docs=docs,
        checked_against=checked,
        secret=r.text("secret", choices=("chosen", "issued")),
        secret_format=r.text("secret_format"),
        setup=r.texts("setup", required=True),
        test_instructions=r.text("test_instructions"),
        scheme=r.text("scheme"),
        signature=signature,
        timestamp=timestamp,
        jwt=_jwt(r),
        token_at=r.optional_location("token"),
        header_prefixes=r.texts("header_prefixes"),
        event_id=_first(r, "event_id"),
        event_type=_first(r, "event_type"),
        event_id_also=_rest(r, "event_id"),
        event_type_also=_rest(r, "event_type"),
        test=r.conditions("test"),
        handshake=_handshake(r),
        headers=r.texts("headers"),
        mismatch_hint=r.text("mismatch_hint", ""),
    )
    _check_family(r, entry)
    return entry


def _signature(r: _Reader) -> Signature | None:
    s = r.table("signature")
    if s is None:
        return None
    s.known(SIGNATURE_FIELDS)
    at = tuple(s.location("at", raw) for raw in s.texts("at", required=True))
    template = s.text("template", "{body}")
    names = PLACEHOLDER.findall(template)
    for placeholder in names:
        if placeholder in ("body", "timestamp", "url", "method"):
            continue
        s.location("template", placeholder)  # {header:X}, {json:/a}, {query:q}
    sig = Signature(
        at=at,
        template=template,
        algorithm=s.text("algorithm", "sha256", choices=ALGORITHMS),
        encoding=s.text("encoding", "hex", choices=ENCODINGS),
        prefix=s.text("prefix", ""),
        key=s.text("key", "utf8", choices=KEYS),
        separator=s.text("separator", ""),
        kv_signature=s.text("kv_signature", ""),
        kv_timestamp=s.text("kv_timestamp", ""),
        legacy=_legacy(s),
    )
    if sig.kv_timestamp and not sig.kv_signature:
        raise s.fail("kv_timestamp", "needs kv_signature (the header is key=value pairs)")
    return sig


def _first(r: _Reader, name: str) -> Location | None:
    """A location field, or the first of a list of them (the others are looked at in turn)."""
    values = r.texts(name)
    return r.location(name, values[0]) if values else None


def _rest(r: _Reader, name: str) -> tuple[Location, ...]:
    return tuple(r.location(name, value) for value in r.texts(name)[1:])


def _legacy(s: _Reader) -> Legacy | None:
    table = s.table("legacy")
    if table is None:
        return None
    table.known(frozenset({"at", "algorithm", "prefix"}))
    return Legacy(at=table.location("at"), algorithm=table.text("algorithm", "sha1", choices=ALGORITHMS),
                  prefix=table.text("prefix", ""))


def _timestamp(r: _Reader, signature: Signature | None) -> Timestamp | None:
    t = r.table("timestamp")
    if t is None:
        if signature and "{timestamp}" in signature.template:
            raise r.fail("timestamp", "is required: the signature template signs {timestamp}")
        return None
    t.known(frozenset({"at", "unit", "tolerance_s"}))
    at = t.location("at", kinds=("header", "json", "query", "kv"))
    if at.kind == "kv" and not (signature and signature.kv_timestamp == at.name):
        raise t.fail("at", "kv:<key> needs signature.kv_timestamp set to the same key")
    stamp = Timestamp(at=at, unit=t.text("unit", "s", choices=UNITS),
                      tolerance_s=t.number("tolerance_s", 300, 1, 86400))
    in_signed_body = at.kind == "json" and signature is not None and "{body}" in signature.template
    if signature and "{timestamp}" not in signature.template and at.kind != "kv" and not in_signed_body:
        signed_headers = {p for p in PLACEHOLDER.findall(signature.template)}
        if at.render() not in signed_headers:
            raise t.fail("at", "the timestamp must be signed: put {timestamp} in signature.template")
    return stamp


def _jwt(r: _Reader) -> Jwt | None:
    j = r.table("jwt")
    if j is None:
        return None
    j.known(frozenset({"at", "scheme", "body_hash_claim", "issuer", "max_age_s"}))
    return Jwt(at=j.location("at", kinds=("header", "query")), scheme=j.text("scheme", ""),
               body_hash_claim=j.text("body_hash_claim", ""), issuer=j.text("issuer", ""),
               max_age_s=j.number("max_age_s", 0, 0, 86400))


def _handshake(r: _Reader) -> Handshake | None:
    h = r.table("handshake")
    if h is None:
        return None
    h.known(HANDSHAKE_FIELDS)
    reply_json = h.raw.get("reply_json", {})
    reply_headers = h.raw.get("reply_headers", {})
    if not isinstance(reply_json, dict) or not isinstance(reply_headers, dict):
        raise h.fail("reply_json", "reply_json and reply_headers must be tables")
    shake = Handshake(
        kind=h.text("kind"),
        when=h.conditions("when"),
        signed=h.flag("signed"),
        token=h.optional_location("token"),
        reply=h.text("reply", "text", choices=REPLIES),
        reply_status=h.number("reply_status", 200, 200, 299),
        reply_json=reply_json,
        reply_headers={str(k): str(v) for k, v in reply_headers.items()},
        event_type=h.text("event_type", "handshake"),
        description=h.text("description"),
    )
    if not shake.when:
        raise h.fail("when", "must name at least one condition that marks the handshake")
    uses_token = "{token}" in repr(shake.reply_json) + repr(shake.reply_headers) or shake.reply == "text"
    if uses_token and shake.token is None and shake.reply != "empty":
        raise h.fail("token", "is required: the reply echoes {token}")
    return shake


def _check_family(r: _Reader, e: Entry) -> None:
    needs = {
        "hmac": e.signature is not None,
        "ed25519": e.signature is not None,
        "ecdsa": e.signature is not None,
        "jwt": e.jwt is not None,
        "token": e.token_at is not None,
        "basic": True,
        "standard-webhooks": bool(e.header_prefixes),
    }
    if not needs[e.family]:
        field_name = {"jwt": "jwt", "token": "token", "standard-webhooks": "header_prefixes"}.get(e.family, "signature")
        raise r.fail(field_name, f"is required for family {e.family!r}")
    if e.family in ("ed25519", "ecdsa") and e.signature and e.signature.key not in ("hex", "base64"):
        raise r.fail("signature", "key must be hex or base64 (how the public key is written)")
    if e.family in ("token", "basic", "jwt") and e.timestamp is not None:
        raise r.fail("timestamp", f"family {e.family!r} signs no timestamp")
