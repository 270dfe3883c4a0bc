"""Signing outbound webhooks the Standard Webhooks way (https://www.standardwebhooks.com/): the secret
is ``whsec_`` + base64 of random bytes; the signature is ``v1,`` + base64 HMAC-SHA256, keyed with the
decoded secret, of ``{webhook-id}.{webhook-timestamp}.{body}``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature(secret: str, msg_id: str, timestamp_s: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{msg_id}.{timestamp_s}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, msg_id: str, timestamp_s: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": signature(secret, msg_id, timestamp_s, body),
        "content-type": "application/json",
        "user-agent": "hookstatus-notifier/1",
    }
