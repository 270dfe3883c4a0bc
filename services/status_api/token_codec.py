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
expired. The payload of a token that passed that far is kept (``VERIFIED_CACHE`` tokens, by their exact
spelling), so a page's next calls skip the decoding; the clock and scope rules run on every call.

A token may also carry a *create grant* (``scope`` = ``connections:create``): the page may then create
connections in its account, ``create_limit`` of them at most (1 to ``MAX_CREATES_PER_TOKEN``), of the
providers in ``providers`` only when that claim is present. A ``scope`` naming anything else, a grant
without its limit, or a limit over the server's bound is ``invalid_token``: a token never holds a power
the server does not know how to bound.

``POST /v1/accounts/{account_id}/tokens`` (service token only; ``tokens.py``) mints one.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import jwt

from shared.errors import ConfigError, Unauthorized

AUDIENCE = "hookstatus-page"
ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["aud", "exp", "iat", "sub"]
CLOCK_SKEW_S = 30  # a token issued by a backend whose clock runs this much ahead is still accepted
MIN_KEY_CHARS = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")
_KID = re.compile(r"^([A-Za-z0-9._-]{1,64}):(.+)$")
CREATE_SCOPE = "connections:create"
MAX_GRANT_PROVIDERS = 200
VERIFIED_CACHE = 4096  # signed payloads of recently presented tokens kept (see ``_signed_claims``)


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    secret: str


@dataclass(frozen=True, slots=True)
class CreateGrant:
    """What a browser token may create: at most ``limit`` connections, of ``providers`` (None: any)."""

    limit: int
    providers: frozenset[str] | None = None

    def allows(self, provider: str) -> bool:
        return self.providers is None or provider in self.providers


@dataclass(frozen=True, slots=True)
class BrowserClaims:
    account_id: str
    expires_at_ms: int
    create: CreateGrant | None = None


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


@functools.lru_cache(maxsize=VERIFIED_CACHE)
def fingerprint(token: str) -> str:
    """A short digest naming one token (a token has one spelling only, see ``_canonical``)."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def mint(keys: tuple[SigningKey, ...], account_id: str, issued_at_s: int, expires_at_s: int,
         create: CreateGrant | None = None) -> str:
    key = keys[0]
    # ``jti``: a random id, so two tokens minted for the same account, grant and second are two tokens
    # (each with its own per-token limits: a create grant's count, the streams it may hold).
    claims: dict[str, object] = {"aud": AUDIENCE, "sub": account_id, "iat": issued_at_s, "exp": expires_at_s,
                                 "jti": secrets.token_urlsafe(12)}
    if create is not None:
        claims["scope"] = CREATE_SCOPE
        claims["create_limit"] = create.limit
        if create.providers is not None:
            claims["providers"] = sorted(create.providers)
    return jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})


def verify(keys: tuple[SigningKey, ...], token: str, now: int, max_ttl_s: int,
           max_creates: int = 0) -> BrowserClaims:
    """The claims of a valid token; ``invalid_token`` or ``token_expired`` (both 401) otherwise."""
    return _checked(_signed_claims(keys, token), now, max_ttl_s, max_creates)


@functools.lru_cache(maxsize=VERIFIED_CACHE)
def _signed_claims(keys: tuple[SigningKey, ...], token: str) -> Mapping[str, object]:
    """The payload of a token whose spelling and signature check out, decoded. A page presents the same
    token on every call, so the signed payload is kept (by the exact token and key list; a token that
    fails is never kept): decoding and the HMAC were most of a browser read's own CPU. The rules that
    depend on the clock or the settings (``_checked``) still run on every call."""
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
        return MappingProxyType(claims)  # shared by every call that hits the cache: read-only
    raise _invalid()


def _checked(claims: Mapping[str, object], now: int, max_ttl_s: int, max_creates: int) -> BrowserClaims:
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
    return BrowserClaims(sub, exp * 1000, _grant(claims, max_creates))


def _grant(claims: Mapping[str, object], max_creates: int) -> CreateGrant | None:
    """The create grant, checked after the signature: absent, or exactly well formed and in bounds."""
    scope, limit, providers = claims.get("scope"), claims.get("create_limit"), claims.get("providers")
    if scope is None:
        if limit is not None or providers is not None:
            raise _invalid()
        return None
    if scope != CREATE_SCOPE or not _is_int(limit):
        raise _invalid()
    assert isinstance(limit, int)
    if not 1 <= limit <= max_creates:
        raise _invalid()
    if providers is None:
        return CreateGrant(limit)
    if (not isinstance(providers, list) or not 1 <= len(providers) <= MAX_GRANT_PROVIDERS
            or not all(isinstance(p, str) and 0 < len(p) <= 64 for p in providers)):
        raise _invalid()
    return CreateGrant(limit, frozenset(providers))


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
