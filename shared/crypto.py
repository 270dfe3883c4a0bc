"""Secrets at rest: AES-256-GCM, keys from the environment, each with a key id.

``SECRETS_KEYS`` lists the keys, comma-separated, each ``<kid>:<base64 of 32 random bytes>``. The first
key encrypts; every listed key decrypts, so keys rotate without downtime: prepend the new key, deploy
every service, run ``python -m scripts.rotate_secret_keys`` (re-encrypts everything under the newest
key), then drop the old key. Generate a key with::

    python -c "import base64, os; print(base64.b64encode(os.urandom(32)).decode())"

A sealed value is ``enc1:<kid>:<base64url(nonce || ciphertext || tag)>``, with a fresh 96-bit nonce per
value and the connection id as associated data, so a value copied to another connection does not
decrypt. A value without the ``enc1:`` prefix is a plaintext written before encryption was introduced:
it is read as is, and the rotation command seals it. The empty string stays empty (it means "none").
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.errors import ConfigError, HookStatusError

PREFIX = "enc1"
KEY_BYTES = 32
NONCE_BYTES = 12
_KID = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
# A development key: `make run` and the tests use it when SECRETS_KEYS is unset (the services say so).
SEALED_FIELDS = frozenset({"secret", "prev_secret", "settings"})  # a connection hash's sealed fields
DEV_SECRETS_KEY = "dev:" + base64.b64encode(b"hookstatus-development-key-00000").decode()


class SecretUnreadable(HookStatusError):
    """A sealed value that no configured key opens (an unknown kid, or altered bytes)."""


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str
    aead: AESGCM = field(repr=False)


def _parse(entry: str) -> _Key:
    kid, sep, encoded = entry.partition(":")
    if not sep or not _KID.match(kid):
        raise ConfigError("SECRETS_KEYS: each entry is <kid>:<base64 key>, the kid letters, digits, '.', '_', '-'")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"SECRETS_KEYS: the key of kid {kid!r} is not valid base64") from exc
    if len(raw) != KEY_BYTES:
        raise ConfigError(f"SECRETS_KEYS: the key of kid {kid!r} must be {KEY_BYTES} bytes (AES-256)")
    return _Key(kid, AESGCM(raw))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sealer:
    """Seals and opens the secret fields of connections. Built once per process from ``SECRETS_KEYS``."""

    def __init__(self, entries: tuple[str, ...]) -> None:
        keys = [_parse(entry) for entry in entries]
        if not keys:
            raise ConfigError("SECRETS_KEYS must list one or more keys")
        if len({k.kid for k in keys}) != len(keys):
            raise ConfigError("SECRETS_KEYS: two keys have the same kid")
        self._keys = {k.kid: k for k in keys}
        self.current_kid = keys[0].kid

    def seal(self, plaintext: str, context: str) -> str:
        """``plaintext`` encrypted under the current key, bound to ``context`` (the connection id)."""
        if plaintext == "":
            return ""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.current_kid].aead.encrypt(nonce, plaintext.encode(), context.encode())
        return f"{PREFIX}:{self.current_kid}:{_b64(nonce + sealed)}"

    def open(self, value: str, context: str) -> str:
        """The plaintext of a sealed value (a legacy plaintext value as is)."""
        if not value.startswith(PREFIX + ":"):
            return value
        _, kid, encoded = value.split(":", 2)
        key = self._keys.get(kid)
        if key is None:
            raise SecretUnreadable(f"a secret is sealed with key {kid!r}, which SECRETS_KEYS does not list")
        try:
            raw = _unb64(encoded)
            return key.aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise SecretUnreadable("a sealed secret does not decrypt (altered, or another connection's)") from exc

    def open_optional(self, value: str | None, context: str) -> str | None:
        return None if value is None else self.open(value, context)

    def is_current(self, value: str) -> bool:
        """True when ``value`` needs no re-sealing: empty, or sealed under the current key."""
        return value == "" or value.startswith(f"{PREFIX}:{self.current_kid}:")

    def reseal(self, value: str, context: str) -> str:
        return value if self.is_current(value) else self.seal(self.open(value, context), context)


def warn_if_development_key(uses_dev_key: bool) -> None:
    """Say so, once per process start, when secrets are sealed with the development key."""
    if uses_dev_key:
        logging.getLogger(__name__).warning(
            "SECRETS_KEYS is not set: secrets are encrypted at rest with the development key; set it in production"
        )
