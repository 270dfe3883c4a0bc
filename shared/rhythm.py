"""Learned silence: how a connection's verified events are usually spaced, and when a gap is too long.

Each verified event updates, in ``apply_delivery.lua``, an exponentially weighted mean and variance of
the gap since the one before (``gap_count``, ``gap_mean_ms``, ``gap_var_ms2`` in the connection hash):
constant work and memory per event. Once ``min_events`` verified events were seen, the script also
stores ``quiet_after_ms``: the gap beyond which the connection shows ``silent``,

    max(mean + k * stddev, factor * mean, floor)

so a connection is silent only when its silence is far outside what it usually shows, many times its
usual gap, and long in absolute terms. The verifier holds these settings (``LEARNED_SILENCE_*``); the
status API and the notifier read the stored limit, so they need none of them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RhythmSettings:
    min_events: int = 20  # verified events before a learned rhythm may say silent
    weight: float = 0.05  # the newest gap's weight in the mean and variance (about the last 20 gaps)
    k: float = 6.0  # standard deviations above the mean
    factor: float = 8.0  # times the mean
    floor_s: int = 900  # never silent by the rhythm for a gap shorter than this

    def args(self) -> list[str | int | float]:
        """The script's arguments 18..22 (``apply_delivery.lua``)."""
        return [self.min_events, self.weight, self.k, self.factor, self.floor_s * 1000]
