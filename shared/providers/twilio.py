"""Twilio: ``X-Twilio-Signature: <base64 HMAC-SHA1(auth token, URL + sorted form params)>``.

The URL is the one Twilio requested: this connection's ``webhook_url`` plus the query string as
received (``InboundRequest.url``), never the Host header. Form params are appended sorted by name, each
as name + value (values of a repeated name sorted too). JSON bodies are signed over the URL alone, which
then carries ``bodySHA256`` = hex SHA-256 of the raw body. Twilio signs the URL with or without the
default port depending on the product, so both are tried, as Twilio's own validator does. An
``X-Twilio-Webhooks-Signature-Settings: algorithm=HMAC_SHA256`` header switches the HMAC to SHA-256.
There is no timestamp: Twilio's scheme cannot detect replays.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import parse_qs, parse_qsl, urlsplit, urlunsplit

from shared.errors import VerificationError
from shared.providers import core
from shared.providers.adapter_kit import PastedSecretProvider
from shared.providers.base import InboundRequest, ProviderInfo, Verified
from shared.providers.events import body_fingerprint

SIGNATURE = "X-Twilio-Signature"
SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
ALGORITHMS: dict[str, core.Algorithm] = {"HMAC_SHA1": "sha1", "HMAC_SHA256": "sha256"}
DEFAULT_PORTS = {"https": 443, "http": 80}


def url_forms(url: str) -> list[str]:
    """The URL as given, plus the same URL with the default port added or removed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    default = DEFAULT_PORTS.get(parts.scheme)
    if parts.port is None and default:
        other = f"{host}:{default}"
    elif parts.port == default:
        other = host
    else:
        return [url]
    return [url, urlunsplit(parts._replace(netloc=other))]


def signed_params(body: bytes) -> str:
    """Form params sorted by name (values of one name sorted too), concatenated as name + value."""
    grouped: dict[str, set[str]] = {}
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        grouped.setdefault(name, set()).add(value)
    return "".join(name + value for name in sorted(grouped) for value in sorted(grouped[name]))


def _algorithm(request: InboundRequest) -> core.Algorithm:
    for part in (request.headers.get(SETTINGS_HEADER) or "").split(","):
        name, _, value = part.partition("=")
        if name.strip() == "algorithm" and value.strip():
            if value.strip().upper() not in ALGORITHMS:
                raise VerificationError(
                    core.MALFORMED_SIGNATURE,
                    f"{SETTINGS_HEADER} names an unknown algorithm; HMAC_SHA1 and HMAC_SHA256 are supported.",
                    header=SETTINGS_HEADER,
                )
            return ALGORITHMS[value.strip().upper()]
    return "sha1"


class Twilio(PastedSecretProvider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="twilio",
        title="Twilio",
        headers=(SIGNATURE,),
        scheme="base64 HMAC-SHA1(auth token, webhook URL + sorted form params); JSON bodies: URL with "
        "bodySHA256 = hex SHA-256(body)",
        handshake=None,
        secret_format="the account's Auth Token (Console -> Account Info)",
        settings={},
        test_instructions="Paste the webhook URL as the number's Messaging or Voice webhook, then send an "
        "SMS or call the number.",
    )
    methods: ClassVar[tuple[str, ...]] = ("GET", "POST")  # voice webhooks may be configured as GET

    def generate_secret(self) -> str:
        return core.SECRET_PENDING  # the account's Auth Token

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        given = core.decode_b64(core.require_header(request, SIGNATURE), f"{SIGNATURE} value")
        algorithm = _algorithm(request)
        suffix = self._params_or_body_hash(request)
        candidates = [core.hmac_digest(secret.encode(), (url + suffix).encode(), algorithm)
                      for url in url_forms(request.url)]
        if not core.any_matches(given, candidates):
            raise core.mismatch(
                "Twilio signs with the account's Auth Token and the exact URL it called: the webhook URL in "
                "Twilio must be this connection's webhook URL."
            )
        token = request.headers.get("I-Twilio-Idempotency-Token")
        params = dict(parse_qsl(request.body.decode("utf-8", "replace")))
        status = params.get("MessageStatus") or params.get("SmsStatus") or params.get("CallStatus")
        return Verified(
            event_id=f"twilio:{token}" if token else body_fingerprint(request.url.encode() + request.body),
            # The idempotency token is not signed; the URL and the parameters are.
            fingerprint=body_fingerprint(request.url.encode() + request.body) if token else None,
            event_type=status,
        )

    @staticmethod
    def _params_or_body_hash(request: InboundRequest) -> str:
        """What follows the URL in the signed string; for JSON bodies, checks ``bodySHA256`` first."""
        query = parse_qs(urlsplit(request.url).query)
        if "bodySHA256" in query:
            digest = hashlib.sha256(request.body).hexdigest().encode()
            if not core.constant_time_equal(digest, query["bodySHA256"][0].lower().encode()):
                raise core.mismatch("The body does not match the bodySHA256 in the URL: it was altered.")
            return ""
        return "" if request.method == "GET" else signed_params(request.body)
