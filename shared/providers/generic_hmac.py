"""``generic-hmac``: an HMAC scheme described entirely by the connection's settings, for any sender that
is not listed.

The signed string is a template over ``{body}`` (the raw bytes, required), ``{timestamp}`` (exactly as
sent in ``timestamp_header``) and ``{url}`` (the connection's webhook URL plus the query as received).
A timestamp header, when set, must be signed (otherwise it proves nothing) and is checked against
``tolerance_s``. Settings are checked once, at creation, so a bad setup is a 400 and not a failure later.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from shared.errors import SettingsError, VerificationError
from shared.providers import core
from shared.providers.adapter_kit import PastedSecretProvider, random_secret
from shared.providers.base import InboundRequest, ProviderInfo, Verified
from shared.providers.events import body_fingerprint, dig, json_body

PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
PLACEHOLDERS = frozenset({"body", "timestamp", "url"})
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
CHOICES: dict[str, tuple[str, ...]] = {
    "algorithm": ("sha256", "sha1", "sha512"),
    "encoding": ("hex", "base64"),
    "secret_encoding": ("utf8", "hex", "base64"),
    "timestamp_unit": ("s", "ms"),
}
KNOWN = frozenset({*CHOICES, "header", "prefix", "timestamp_header", "tolerance_s", "template", "id_header"})


def _header(settings: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = settings.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not HEADER_NAME.match(value):
        raise SettingsError(f"settings.{name} must be an HTTP header name", field=name)
    return value


def _choice(settings: Mapping[str, Any], name: str) -> str:
    value = settings.get(name, CHOICES[name][0])
    if value not in CHOICES[name]:
        raise SettingsError(f"settings.{name} must be one of {', '.join(CHOICES[name])}", field=name)
    return str(value)


def _template(settings: Mapping[str, Any], has_timestamp: bool) -> str:
    template = settings.get("template", "{timestamp}.{body}" if has_timestamp else "{body}")
    if not isinstance(template, str) or len(template) > 256:
        raise SettingsError("settings.template must be a string of at most 256 characters", field="template")
    names = PLACEHOLDER.findall(template)
    if names.count("body") != 1 or not set(names) <= PLACEHOLDERS:
        raise SettingsError(
            "settings.template must contain {body} once and no placeholders other than {timestamp} and {url}",
            field="template",
        )
    if ("timestamp" in names) != has_timestamp:
        raise SettingsError(
            "settings.template must sign {timestamp} exactly when settings.timestamp_header is set",
            field="template",
        )
    return template


def _tolerance(settings: Mapping[str, Any]) -> int:
    value: object = settings.get("tolerance_s", 300)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 86400:
        raise SettingsError("settings.tolerance_s must be an integer from 1 to 86400", field="tolerance_s")
    return value


def _prefix(settings: Mapping[str, Any]) -> str:
    value = settings.get("prefix", "")
    if not isinstance(value, str) or len(value) > 32 or not value.isprintable():
        raise SettingsError("settings.prefix must be a short printable string", field="prefix")
    return value


def key_of(secret: str, encoding: str) -> bytes:
    try:
        if encoding == "hex":
            return bytes.fromhex(secret)
        if encoding == "base64":
            return base64.b64decode(secret, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise VerificationError(
            "secret_format", f"The connection's signing secret is not valid {encoding}, as its settings say."
        ) from exc
    return secret.encode()


class GenericHmac(PastedSecretProvider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="generic-hmac",
        title="Generic HMAC",
        headers=(),
        scheme="HMAC (sha1/sha256/sha512) over a template of {body}, {timestamp} and {url}; hex or base64; "
        "optional prefix and signed timestamp header",
        handshake=None,
        secret_format="the sender's signing secret (generated when none is given); see secret_encoding",
        settings={
            "header": "required: the header carrying the signature",
            "algorithm": "optional: sha256 (default), sha1 or sha512",
            "encoding": "optional: hex (default) or base64",
            "prefix": "optional: text before the signature, e.g. 'sha256='",
            "secret_encoding": "optional: utf8 (default), hex or base64: how the secret becomes the key",
            "timestamp_header": "optional: a header with the signed Unix timestamp",
            "timestamp_unit": "optional: s (default) or ms",
            "tolerance_s": "optional: allowed clock skew with a timestamp header, default 300",
            "template": "optional: the signed string, default '{body}' or '{timestamp}.{body}'",
            "id_header": "optional: a header with the event id",
        },
        test_instructions="Send any signed request to the webhook URL.",
    )

    def generate_secret(self) -> str:
        return random_secret()

    def validate_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(settings) - KNOWN)
        if unknown:
            raise SettingsError(f"unknown generic-hmac setting {unknown[0]!r}", field=unknown[0])
        checked: dict[str, Any] = {name: _choice(settings, name) for name in CHOICES}
        checked["header"] = _header(settings, "header", required=True)
        checked["prefix"] = _prefix(settings)
        timestamp_header = _header(settings, "timestamp_header", required=False)
        checked["template"] = _template(settings, timestamp_header is not None)
        if timestamp_header:
            checked["timestamp_header"] = timestamp_header
            checked["tolerance_s"] = _tolerance(settings)
        if id_header := _header(settings, "id_header", required=False):
            checked["id_header"] = id_header
        return checked

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        if not settings.get("header"):  # another scheme's diagnosis may try us without settings
            raise VerificationError(core.MISSING_HEADER, "generic-hmac has no settings.")
        header = settings["header"]
        raw = core.after_prefix(core.require_header(request, header), settings["prefix"], header) \
            if settings["prefix"] else core.require_header(request, header)
        given = (core.decode_b64 if settings["encoding"] == "base64" else core.decode_hex)(raw, f"{header} value")
        raw_ts, timestamp = self._timestamp(request, settings)
        signed = self._signed(request, settings["template"], raw_ts)
        expected = core.hmac_digest(key_of(secret, settings["secret_encoding"]), signed, settings["algorithm"])
        if not core.constant_time_equal(expected, given):
            raise core.mismatch()
        if timestamp is not None:  # signed, so a timestamp error means a replay or a skewed clock
            core.check_tolerance(timestamp, now, settings["tolerance_s"])
        data = json_body(request.body)
        id_header = settings.get("id_header")
        header_id = request.headers.get(id_header) if id_header else None
        event_id = header_id or dig(data, "id")
        return Verified(event_id=event_id or body_fingerprint(request.body), event_type=dig(data, "type"),
                        fingerprint=body_fingerprint(signed) if header_id else None)  # the id header is unsigned

    @staticmethod
    def _timestamp(request: InboundRequest, settings: Mapping[str, Any]) -> tuple[str, float | None]:
        """The timestamp as sent (for the template) and in seconds; ``("", None)`` without one."""
        header = settings.get("timestamp_header")
        if not header:
            return "", None
        raw_ts = core.require_header(request, header)
        return raw_ts, core.parse_timestamp(raw_ts, header, millis=settings["timestamp_unit"] == "ms")

    @staticmethod
    def _signed(request: InboundRequest, template: str, raw_ts: str) -> bytes:
        values = {"timestamp": raw_ts.encode(), "url": request.url.encode(), "body": request.body}
        out, last = bytearray(), 0
        for match in PLACEHOLDER.finditer(template):
            out += template[last : match.start()].encode() + values[match.group(1)]
            last = match.end()
        return bytes(out + template[last:].encode())
