"""Constant-time comparison of a value an attacker sends with the values it may legitimately be."""

from __future__ import annotations

import hmac
from collections.abc import Iterable


def any_matches(given: bytes, candidates: Iterable[bytes]) -> bool:
    """True when ``given`` equals any candidate. Every candidate is compared, each in constant time, so
    neither which one matched nor how much of one matched shows in the time taken."""
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(given, candidate)
    return matched
