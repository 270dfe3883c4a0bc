"""Verifying one delivery for a connection: the current secret, then the previous one during a rotation,
and on failure the most precise reason ``shared.providers.diagnosis`` can find.

This module sits above the provider registry (it hands the registered providers to the diagnosis), so
the core and the adapters below it never import the registry or the diagnosis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Literal

from shared.errors import VerificationError
from shared.providers import PROVIDERS
from shared.providers.base import InboundRequest, Provider, Verified
from shared.providers.core import SECRET_FORMAT, SIGNATURE_MISMATCH, TIMESTAMP_REASONS, secret_not_set
from shared.providers.diagnosis import Secrets, diagnose


def verify_with_rotation(
    provider: Provider,
    request: InboundRequest,
    secrets: tuple[str, str | None],
    settings: Mapping[str, Any],
    now: float,
    *,
    retired: str | None = None,
    diagnosis: bool = True,
) -> Verified:
    """Verify with the current secret, then (during a rotation) with the previous one.

    On failure the error is refined by the diagnosis (which secret or scheme the request does match,
    if any; not when ``diagnosis`` is off, for a connection over its rejected-delivery budget);
    ``retired`` is a previous secret whose window has ended, used only to say so.
    """
    current, previous = secrets
    # An empty key would let anyone sign; only a GET handshake proven otherwise (Meta's verify token,
    # flagged by the adapter's ``secretless_get``) may go on without a secret.
    if not current and not (request.method == "GET" and getattr(provider, "secretless_get", False)):
        raise secret_not_set()
    try:
        return _current_then_previous(provider, request, (current, previous), settings, now)
    except VerificationError as exc:
        if not diagnosis:
            raise
        known = Secrets(current, previous, retired)
        raise diagnose(provider, request, exc, known, settings, now, PROVIDERS.values()) from None


# What the current secret says when it cannot have signed the request, so the previous one may have:
# another signature, or a signature of another kind (a rotation from a whsec_ secret to a whpk_ key).
NOT_THIS_SECRET = frozenset({SIGNATURE_MISMATCH, SECRET_FORMAT})


def _current_then_previous(
    provider: Provider,
    request: InboundRequest,
    secrets: tuple[str, str | None],
    settings: Mapping[str, Any],
    now: float,
) -> Verified:
    current, previous = secrets
    try:
        return provider.verify(request, current, settings, now)
    except VerificationError as exc:
        if exc.code not in NOT_THIS_SECRET or not previous:
            raise
        first = exc
    try:
        verified = provider.verify(request, previous, settings, now)
    except VerificationError as exc:
        # Timestamps are judged after the signature: a timestamp error means the previous secret matched.
        if exc.code in TIMESTAMP_REASONS:
            raise
        raise first from None
    return _with_slot(verified, "previous")


def _with_slot(verified: Verified, slot: Literal["current", "previous"]) -> Verified:
    return replace(verified, secret_slot=slot)
