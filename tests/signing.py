"""Signing test requests with the providers' own libraries (never with our verifier's code)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from standardwebhooks import Webhook


def standard_webhooks_headers(
    secret: str, body: bytes, msg_id: str, *, skew_s: float = 0, prefix: str = "webhook"
) -> dict[str, str]:
    at = datetime.now(tz=UTC) + timedelta(seconds=skew_s)
    signature = Webhook(secret).sign(msg_id, at, body.decode())
    return {
        f"{prefix}-id": msg_id,
        f"{prefix}-timestamp": str(int(at.timestamp())),
        f"{prefix}-signature": signature,
        "content-type": "application/json",
    }


def generic_sha256_headers(secret: str, body: bytes) -> dict[str, str]:
    # The documented scheme, written out: 'sha256=' + hex HMAC-SHA256 of the raw body.
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Signature-256": f"sha256={digest}", "content-type": "application/json"}
