"""One growth series (x values and what was measured at each) and its verdict."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.stats import growth_exponent


@dataclass
class Series:
    """One sweep: x values and what was measured at each."""

    name: str
    x_label: str
    p99_label: str
    x: list[float] = field(default_factory=list)
    throughput: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)

    def verdict(self) -> str:
        """Per-webhook cost (1 / throughput) and p99 as x grows: their exponents, and a limit stated when
        one grows faster than linearly."""
        cost = growth_exponent(self.x, [1 / t if t > 0 else float("nan") for t in self.throughput])
        p99 = growth_exponent(self.x, self.p99_ms)
        words = f"per-webhook cost ~ x^{cost:.2f}, p99 ~ x^{p99:.2f}"
        worst = max((v for v in (cost, p99) if v == v), default=0.0)
        if worst > 1.1:
            return words + ": grows faster than linearly, a LIMIT of this design"
        if worst > 0.2:
            return words + ": grows, at most linearly"
        return words + ": flat"
