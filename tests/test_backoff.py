"""shared.backoff: delays grow to a ceiling, are jittered, and start again after a reset."""

from __future__ import annotations

import random

import pytest

from shared.backoff import Backoff


def test_delays_grow_to_the_ceiling_each_within_its_jitter_band() -> None:
    backoff = Backoff(0.1, 1.0, rng=random.Random(7))
    caps = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    for cap in caps:
        delay = backoff.next_s()
        assert cap / 2 <= delay <= cap
    for _ in range(5000):  # at the ceiling for good: no overflow however long the outage
        assert 0.5 <= backoff.next_s() <= 1.0


def test_jitter_spreads_processes_that_failed_together() -> None:
    delays = {round(Backoff(1.0, 8.0, rng=random.Random(seed)).next_s(), 6) for seed in range(20)}
    assert len(delays) > 10


def test_reset_starts_again_from_the_first_delay() -> None:
    backoff = Backoff(0.1, 5.0, rng=random.Random(1))
    for _ in range(6):
        backoff.next_s()
    assert backoff.cap_s() == 5.0
    backoff.reset()
    assert backoff.cap_s() == 0.1
    assert 0.05 <= backoff.next_s() <= 0.1


@pytest.mark.parametrize(("first_s", "max_s", "factor"), [(0, 1, 2), (2, 1, 2), (0.1, 1, 0.5)])
def test_a_backoff_that_cannot_work_is_refused(first_s: float, max_s: float, factor: float) -> None:
    with pytest.raises(ValueError):
        Backoff(first_s, max_s, factor)
