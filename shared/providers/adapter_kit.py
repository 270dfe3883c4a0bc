"""Small pieces several provider adapters share: pasted secrets, ``k=v`` signature headers, echoed
handshake tokens. Everything here raises the project's own errors, never a stray ``ValueError``."""

from __future__ import annotations

import hashlib
import re
import secrets as _secrets

from shared.errors import SettingsError, VerificationError
from shared.providers import core
from shared.providers.base import HandshakeReply, Provider, Verified

MAX_ECHO_CHARS = 1024
INVALID_TOKEN = "invalid_handshake_token"
# The characters providers' handshake tokens are made of (random strings: base64, base64url, hex,
# digits, UUIDs). Never braces, quotes, colons, spaces or controls: a token can never be JSON, HTML or
# a signed string such as Zoom's ``v0:{timestamp}:{body}``, so a reply computed over it can never be
# the signature of an event.
TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-.~+/=]{1,256}")


def pasted_secret(secret: str, min_len: int = 8) -> str:
    """A secret the provider issued, as pasted: surrounding whitespace removed, not absurdly short."""
    value = secret.strip()
    if len(value) < min_len:
        raise SettingsError(
            f"the signing secret is too short (at least {min_len} characters); paste it exactly as the "
            "provider shows it",
            field="secret",
        )
    return value


def random_secret() -> str:
    return _secrets.token_hex(32)


def key_values(raw: str, header: str, separator: str = ",") -> list[tuple[str, str]]:
    """``t=1,v1=ab,v1=cd`` -> ``[("t", "1"), ("v1", "ab"), ("v1", "cd")]``; malformed parts are an error."""
    pairs: list[tuple[str, str]] = []
    parts = raw.split(separator)
    core.check_signature_count(len(parts) - 3, header)  # a timestamp, an id or a v0 beside the signatures
    for part in parts:
        key, sep, value = part.strip().partition("=")
        if not sep or not key.strip() or not value.strip():
            raise VerificationError(
                core.MALFORMED_SIGNATURE,
                f"The {header} header is malformed: expected key=value pairs separated by '{separator}'.",
                header=header,
            )
        pairs.append((key.strip(), value.strip()))
    return pairs


def values_of(pairs: list[tuple[str, str]], key: str) -> list[str]:
    return [value for k, value in pairs if k == key]


def one_value(pairs: list[tuple[str, str]], key: str, header: str) -> str:
    found = values_of(pairs, key)
    if not found:
        raise VerificationError(
            core.MALFORMED_SIGNATURE, f"The {header} header has no '{key}=' part.", header=header
        )
    return found[0]


def hex_candidates(values: list[str], header: str) -> list[bytes]:
    """Every value that is valid hex, decoded. Others are skipped (a placeholder such as ``h1=dummy``
    simply never matches, as in the providers' SDKs); none valid at all is a malformed header."""
    core.check_signature_count(len(values), header)
    found = []
    for value in values:
        try:
            found.append(bytes.fromhex(value))
        except ValueError:
            continue
    if not found:
        raise VerificationError(
            core.MALFORMED_SIGNATURE, f"The {header} header has no hex signature value.", header=header
        )
    return found


def echo_token(value: str | None, name: str, alphabet: re.Pattern[str] = TOKEN_CHARS) -> str:
    """A handshake token to echo (or sign) back: present, and made only of the characters the provider
    uses (``alphabet``), so we never reflect, or sign, data a stranger chose."""
    if not value:
        raise VerificationError(
            "malformed_handshake", f"The handshake's {name} is missing or empty.", status=400
        )
    if len(value) > MAX_ECHO_CHARS or not alphabet.fullmatch(value):
        raise VerificationError(
            INVALID_TOKEN,
            f"The handshake's {name} is not a token of the form the provider sends (letters, digits and "
            "a few symbols, at most 256 characters).",
            status=400,
        )
    return value


def token_id(kind: str, token: str) -> str:
    """A stable event id for a handshake token, without storing the token itself."""
    return f"{kind}:" + hashlib.sha256(token.encode()).hexdigest()[:32]


def echo_handshake(
    value: str | None, name: str, kind: str, event_type: str, alphabet: re.Pattern[str] = TOKEN_CHARS
) -> Verified:
    """A handshake answered by echoing its token as plain text. Anyone can send it, so it proves only
    that the URL is reachable (``reachable_only``). ``nosniff``: the echo is request data, so no browser
    may ever render it as anything but text."""
    token = echo_token(value, name, alphabet)
    return Verified(
        event_id=token_id(kind, token),
        event_type=event_type,
        is_test=True,
        handshake=True,
        reachable_only=True,
        reply=HandshakeReply(
            body=token.encode(), content_type="text/plain", headers={"X-Content-Type-Options": "nosniff"}
        ),
    )


class PastedSecretProvider(Provider):
    """A provider whose secret is pasted by the user: kept as pasted, surrounding whitespace removed."""

    def validate_secret(self, secret: str) -> str:
        return pasted_secret(secret)


class IssuedSecretProvider(PastedSecretProvider):
    """A provider that issues the secret itself: a new connection starts without one (deliveries are
    rejected as ``secret_not_set``) until the user pastes it with a reconnect."""

    def generate_secret(self) -> str:
        return core.SECRET_PENDING
