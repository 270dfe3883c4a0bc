"""Small statistics helpers: percentiles and medians without numpy."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by the nearest-rank method; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    clean = [v for v in values if v == v]  # drop NaN
    return statistics.median(clean) if clean else float("nan")


def growth_exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """k in y ~ x^k: the least-squares slope of log y against log x (NaN for fewer than two usable points).
    0 is flat, 1 linear; above 1, y grows faster than x."""
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0 and y == y]
    if len(points) < 2:
        return float("nan")
    mx = sum(p[0] for p in points) / len(points)
    my = sum(p[1] for p in points) / len(points)
    var = sum((p[0] - mx) ** 2 for p in points)
    if var == 0:
        return float("nan")
    return sum((p[0] - mx) * (p[1] - my) for p in points) / var
