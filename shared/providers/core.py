"""The verification core every provider adapter stands on.

Signatures are always computed over the raw body bytes and compared in constant time; every malformed
header becomes a ``VerificationError`` with one of the reason codes below, never a stray ``ValueError``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Literal

from shared.compare import any_matches as any_matches  # the adapters' one constant-time comparison
from shared.errors import VerificationError
from shared.providers.base import InboundRequest

Algorithm = Literal["sha1", "sha256", "sha512"]

# Reason codes (machine-readable). Messages are written where the error is raised and say what to do.
MISSING_HEADER = "missing_header"
MALFORMED_SIGNATURE = "malformed_signature"
MALFORMED_TIMESTAMP = "malformed_timestamp"
SIGNATURE_MISMATCH = "signature_mismatch"
TIMESTAMP_TOO_OLD = "timestamp_too_old"
TIMESTAMP_TOO_NEW = "timestamp_too_new"
MALFORMED_BODY = "malformed_body"
SECRET_NOT_SET = "secret_not_set"
TOO_MANY_SIGNATURES = "too_many_signatures"
HEADER_TOO_LONG = "header_too_long"
# Work is bounded before it is done: a header carries at most this many signatures (senders put one,
# or two while rotating), and no header an adapter reads is longer than this.
MAX_SIGNATURES = 5
MAX_HEADER_CHARS = 2048
# The request is signed with a kind of key other than the connection's (a whsec_ secret, a whpk_ key).
SECRET_FORMAT = "secret_format"
SECRET_ALREADY_LEARNT = "secret_already_learnt"
# No signing secret yet: the provider issues it only once the webhook URL is registered there.
SECRET_PENDING = ""

TIMESTAMP_REASONS = frozenset({TIMESTAMP_TOO_OLD, TIMESTAMP_TOO_NEW})


def hmac_digest(key: bytes, message: bytes, algorithm: Algorithm = "sha256") -> bytes:
    return hmac.digest(key, message, algorithm)  # the one-shot C path: no HMAC object per request


def constant_time_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def require_header(request: InboundRequest, *names: str) -> str:
    """The first present header among ``names`` (aliases), or a ``missing_header`` error; one longer
    than ``MAX_HEADER_CHARS`` is refused before anything is done with it."""
    for name in names:
        value = request.headers.get(name)
        if value is not None and value.strip():
            if len(value) > MAX_HEADER_CHARS:
                raise VerificationError(
                    HEADER_TOO_LONG, f"The {name} header is longer than {MAX_HEADER_CHARS} characters.",
                    header=name,
                )
            return value.strip()
    raise VerificationError(
        MISSING_HEADER,
        f"The request has no {names[0]} header. Check that the provider signs its webhooks and that "
        "nothing between it and us (a proxy) strips headers.",
        header=names[0],
    )


def decode_b64(value: str, what: str, *, code: str = MALFORMED_SIGNATURE, advice: str = "") -> bytes:
    """Strict base64 (no stray characters), or a ``code`` error saying which value is not."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(code, f"The {what} is not valid base64{advice}.") from exc


def check_signature_count(count: int, header: str) -> None:
    """At most ``MAX_SIGNATURES`` signatures in one header: each one can cost a full check of the body."""
    if count > MAX_SIGNATURES:
        raise VerificationError(
            TOO_MANY_SIGNATURES,
            f"The {header} header carries {count} signatures; at most {MAX_SIGNATURES} are accepted.",
            header=header,
        )


def decode_hex(value: str, what: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise VerificationError(MALFORMED_SIGNATURE, f"The {what} is not valid hex.") from exc


def parse_timestamp(raw: str, header: str, *, millis: bool = False) -> float:
    """A Unix timestamp from a header, in seconds."""
    try:
        value = int(raw.strip())
        # OverflowError: hundreds of digits parse as an int but fit no float; still a malformed header.
        return value / 1000.0 if millis else float(value)
    except (ValueError, OverflowError) as exc:
        raise VerificationError(
            MALFORMED_TIMESTAMP, f"The {header} header is not an integer Unix timestamp.", header=header
        ) from exc


def check_tolerance(timestamp_s: float, now: float, tolerance_s: float) -> None:
    """Raise when the signed timestamp is further than ``tolerance_s`` from our clock."""
    skew = now - timestamp_s
    if skew > tolerance_s:
        raise VerificationError(
            TIMESTAMP_TOO_OLD,
            f"The signed timestamp is {int(skew)} s old (tolerance {int(tolerance_s)} s). Either this is a "
            "replay of an old delivery, or the sender's clock is wrong.",
            skew_s=int(skew),
        )
    if -skew > tolerance_s:
        raise VerificationError(
            TIMESTAMP_TOO_NEW,
            f"The signed timestamp is {int(-skew)} s in the future (tolerance {int(tolerance_s)} s). "
            "The sender's clock runs ahead of ours.",
            skew_s=int(skew),
        )


def mismatch(detail: str = "") -> VerificationError:
    return VerificationError(
        SIGNATURE_MISMATCH,
        "The signature does not match the connection's signing secret. Copy the signing secret from the "
        "provider's dashboard again and reconnect with it." + (f" {detail}" if detail else ""),
    )


def secret_not_set() -> VerificationError:
    return VerificationError(
        SECRET_NOT_SET,
        "Deliveries arrive, but this connection has no signing secret yet. Copy the signing secret the "
        "provider shows for this webhook and reconnect with it.",
    )


def secret_already_learnt() -> VerificationError:
    return VerificationError(
        SECRET_ALREADY_LEARNT,
        "A handshake offered a signing secret, but this connection already learnt its secret from an "
        "earlier one. To register a new webhook here, reconnect with \"secret\": \"await-handshake\" first.",
        status=409,
    )


def after_prefix(raw: str, prefix: str, header: str) -> str:
    """The value after a required ``prefix`` (``sha256=``, ``v0=``), compared case-insensitively."""
    if not raw.lower().startswith(prefix.lower()) or len(raw.strip()) <= len(prefix):
        raise VerificationError(
            MALFORMED_SIGNATURE, f"The {header} header must look like '{prefix}<signature>'.", header=header
        )
    return raw[len(prefix) :].strip()


def check_hex(expected: bytes, raw: str, prefix: str, header: str) -> None:
    """``raw`` is ``prefix`` + the hex of ``expected``, or a reason code says why not."""
    given = decode_hex(after_prefix(raw, prefix, header) if prefix else raw, f"{header} value")
    if not constant_time_equal(expected, given):
        raise mismatch()
