"""End-to-end latency: from each webhook's scheduled send to the first status change that shows it."""

from __future__ import annotations

from bisect import bisect_left
from typing import Any


def match_changes(records: list[tuple[int, float, int]], base: list[int], ids: list[str],
                  changes: list[list[Any]]) -> list[float]:
    """Latency from each accepted webhook's scheduled send to the first change that includes it.

    The k-th webhook (in send order) accepted for a connection is included in its status from
    version ``base + k`` on; the first change seen with that version or a later one is when a user
    would have seen it.
    """
    arrivals: dict[str, list[tuple[int, float]]] = {}
    for cid, version, at in changes:
        arrivals.setdefault(cid, []).append((int(version), float(at)))
    by_target: dict[int, list[float]] = {}
    for target, scheduled, status in records:
        if status in (200, 202):
            by_target.setdefault(target, []).append(scheduled)
    latencies = []
    for target, sends in by_target.items():
        seen = sorted(arrivals.get(ids[target], []))
        earliest: list[tuple[int, float]] = []  # (version, earliest arrival of that version or later)
        best = float("inf")
        for version, at in reversed(seen):
            best = min(best, at)
            earliest.append((version, best))
        earliest.reverse()
        versions = [v for v, _ in earliest]
        for k, scheduled in enumerate(sorted(sends), start=1):
            i = bisect_left(versions, base[target] + k)
            if i < len(earliest):
                latencies.append((earliest[i][1] - scheduled) * 1000)
    return latencies
