"""The status object's formats."""

from __future__ import annotations

from shared.models import iso


def test_timestamps_are_exact_iso_8601_utc() -> None:
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert iso(1795797369123) == "2026-11-27T16:36:09.123Z"
    assert iso("1795797369007") == "2026-11-27T16:36:09.007Z"
    assert iso(None) is None and iso("") is None
