"""Browser tokens: short-lived, stateless JSON Web Tokens (RFC 7519), HS256, scoped to one account.

Header ``{"alg": "HS256", "typ": "JWT", "kid": <key id>}``; claims ``aud`` (always ``hookstatus-page``),
``sub`` (the account id), ``iat`` and ``exp`` (seconds since the epoch). ``TOKEN_SIGNING_KEY`` lists the
keys, comma-separated, each ``<kid>:<secret>`` (or a bare secret, whose kid is the first 8 hex digits of
its SHA-256). The first key signs; every listed key verifies. A token naming a ``kid`` is checked with
that key only; one without a ``kid`` is tried against each key, so a product backend may mint tokens
itself with any JWT library (docs/API.md).

Decoding is strict: HS256 only (never ``none``, never an RSA/EC algorithm fed an HMAC secret), every
claim required, the audience must match, a lifetime no longer than ``BROWSER_TOKEN_MAX_TTL_S``, and
each of the three parts must be canonical unpadded base64url (a token has one spelling only: with junk
inserted, padding appended or spare bits flipped it is ``invalid_token``). The signature is checked
before anything in the payload is believed: a forged token is ``invalid_token`` even when it also looks
expired.

``POST /v1/accounts/{account_id}/tokens`` (service token only; ``tokens.py``) mints one.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from dataclasses import dataclass

import jwt

from shared.errors import ConfigError, Unauthorized

AUDIENCE = "hookstatus-page"
ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["aud", "exp", "iat", "sub"]
CLOCK_SKEW_S = 30  # a token issued by a backend whose clock runs this much ahead is still accepted
MIN_KEY_CHARS = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")
_KID = re.compile(r"^([A-Za-z0-9._-]{1,64}):(.+)$")


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    secret: str


@dataclass(frozen=True, slots=True)
class BrowserClaims:
    account_id: str
    expires_at_ms: int


@functools.lru_cache(maxsize=16)
def signing_keys(entries: tuple[str, ...]) -> tuple[SigningKey, ...]:
    """``TOKEN_SIGNING_KEY``'s entries as keys: ``kid:secret``, or a bare secret (kid derived)."""
    keys = []
    for entry in entries:
        named = _KID.match(entry)
        kid, secret = (named.group(1), named.group(2)) if named else (_derived_kid(entry), entry)
        if len(secret) < MIN_KEY_CHARS:
            raise ConfigError(f"TOKEN_SIGNING_KEY: every secret needs at least {MIN_KEY_CHARS} characters")
        keys.append(SigningKey(kid, secret))
    if not keys:
        raise ConfigError("TOKEN_SIGNING_KEY must list one or more keys")
    if len({k.kid for k in keys}) != len(keys):
        raise ConfigError("TOKEN_SIGNING_KEY: two keys have the same kid")
    return tuple(keys)


def _derived_kid(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


def _invalid() -> Unauthorized:
    return Unauthorized("the token is not valid", code="invalid_token")


def looks_like_browser_token(token: str) -> bool:
    return token.count(".") == 2


def fingerprint(token: str) -> str:
    """A short digest naming one token (a token has one spelling only, see ``_canonical``)."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def mint(keys: tuple[SigningKey, ...], account_id: str, issued_at_s: int, expires_at_s: int) -> str:
    key = keys[0]
    claims = {"aud": AUDIENCE, "sub": account_id, "iat": issued_at_s, "exp": expires_at_s}
    return jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})


def verify(keys: tuple[SigningKey, ...], token: str, now: int, max_ttl_s: int) -> BrowserClaims:
    """The claims of a valid token; ``invalid_token`` or ``token_expired`` (both 401) otherwise."""
    if not _canonical(token):
        raise _invalid()
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError as exc:
        raise _invalid() from exc
    candidates = [k for k in keys if k.kid == kid] if kid is not None else list(keys)
    for key in candidates:
        try:
            claims = jwt.decode(token, key.secret, algorithms=[ALGORITHM], audience=AUDIENCE,
                                options={"require": REQUIRED_CLAIMS, "verify_exp": False, "verify_iat": False})
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as exc:
            raise _invalid() from exc
        return _checked(claims, now, max_ttl_s)
    raise _invalid()


def _checked(claims: dict[str, object], now: int, max_ttl_s: int) -> BrowserClaims:
    """The time and scope rules, after the signature: exact expiry (no leeway), ``iat`` not ahead of
    our clock by more than ``CLOCK_SKEW_S``, a lifetime within the limit, a non-empty account."""
    sub, exp, iat = claims.get("sub"), claims.get("exp"), claims.get("iat")
    if not isinstance(sub, str) or not sub or not _is_int(exp) or not _is_int(iat):
        raise _invalid()
    assert isinstance(exp, int) and isinstance(iat, int)
    if iat * 1000 > now + CLOCK_SKEW_S * 1000 or exp - iat > max_ttl_s:
        raise _invalid()
    if exp * 1000 <= now:
        raise Unauthorized("the browser token has expired; ask the product for a new one",
                           code="token_expired")
    return BrowserClaims(sub, exp * 1000)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _canonical(token: str) -> bool:
    """Each part is unpadded base64url, spelt exactly as its bytes encode (no junk, no spare bits)."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    for part in parts:
        if not _SEGMENT.match(part):
            return False
        try:
            decoded = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except (binascii.Error, ValueError):
            return False
        if base64.urlsafe_b64encode(decoded).rstrip(b"=").decode() != part:
            return False
    return True
