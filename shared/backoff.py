"""Exponential backoff with jitter, for loops that retry a server that went away.

The n-th delay (from 0) is drawn uniformly from ``[cap / 2, cap]`` with ``cap = min(first_s * factor**n,
max_s)``: it grows to ``max_s`` and stays there, and the random half keeps many processes that lost the
same server at the same moment from retrying in step. ``reset`` after a success starts again from
``first_s``, so one outage's long waits do not carry over to the next.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    first_s: float
    max_s: float
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random, repr=False)
    attempt: int = 0  # delays handed out since the last reset

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.max_s or self.factor < 1:
            raise ValueError("backoff needs 0 < first_s <= max_s and factor >= 1")

    def cap_s(self) -> float:
        """The longest the next delay can be."""
        return min(self.first_s * self.factor**self.attempt, self.max_s)

    def next_s(self) -> float:
        cap = self.cap_s()
        if cap < self.max_s:  # once at the ceiling, stop counting: factor**attempt never overflows
            self.attempt += 1
        return self.rng.uniform(cap / 2, cap)

    def reset(self) -> None:
        self.attempt = 0
