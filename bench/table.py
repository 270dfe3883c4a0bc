"""The results table: one ``Row`` per measurement, beside the limit measured in the same run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.load import LoadResult
from bench.plan import Plan
from bench.stats import median, percentile


@dataclass
class Row:
    name: str
    value: float | None
    unit: str
    limit_name: str = ""
    limit: float | None = None
    target: str = ""
    passed: bool | None = None
    note: str = ""
    higher_is_better: bool = True

    def ratio(self) -> str:
        if self.value is None or not self.limit:
            return ""
        return f"{self.value / self.limit:.0%}"


def fmt(value: float | None, unit: str) -> str:
    if value is None or value != value:
        return "n/a"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "ms":
        return f"{value:.3f} ms" if value < 1 else f"{value:.1f} ms"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "KiB":
        return f"{value:.1f} KiB"
    return f"{value:,.0f} {unit}".strip()


def render(rows: list[Row]) -> str:
    header = ("row", "measured", "limit (same run)", "ratio", "target", "pass")
    lines = [header]
    for r in rows:
        limit = f"{r.limit_name} {fmt(r.limit, r.unit)}" if r.limit_name else ""
        verdict = "" if r.passed is None else ("PASS" if r.passed else "FAIL")
        lines.append((r.name, fmt(r.value, r.unit) + (f" {r.note}" if r.note else ""), limit, r.ratio(),
                      r.target, verdict))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def _m(results: Sequence[LoadResult], f: Callable[[LoadResult], float]) -> float:
    return median([f(r) for r in results if not r.void])


def build_rows(plan: Plan, lim: dict[str, Any], sat: list[LoadResult], whole: list[float],
               fixed: list[LoadResult], e2e: list[list[float]], use_sse: bool, verifier: list[float],
               api_sat: list[LoadResult], api_fixed: list[LoadResult], sse: dict[str, float] | None,
               sweep: dict[int, float], memory: float) -> list[Row]:
    rate = lambda r: r.rate  # noqa: E731
    p50 = lambda r: r.p(50)  # noqa: E731
    p99 = lambda r: r.p(99)  # noqa: E731
    minimal = _m(lim["minimal"], rate)
    recv = _m(sat, rate)
    rows = [
        Row("receiver: accepted webhooks/s at saturation", recv, "/s", "minimal receiver", minimal,
            ">= 80% of minimal receiver", recv >= 0.8 * minimal),
        Row("  (same, against a bare aiohttp 202)", recv, "/s", "bare aiohttp", _m(lim["bare"], rate)),
        Row(f"receiver: p50 at {plan.rate}/s", _m(fixed, p50), "ms", "minimal receiver", _m(lim["minimal_rate"], p50)),
        Row(f"receiver: p99 at {plan.rate}/s", _m(fixed, p99), "ms", "minimal receiver", _m(lim["minimal_rate"], p99)),
    ]
    via = "SSE" if use_sse else "Redis pub/sub (SSE not landed)"
    e2e_p50 = median([percentile(x, 50) for x in e2e])
    e2e_p99 = median([percentile(x, 99) for x in e2e])
    rows += [
        Row(f"end to end via {via}: p50 at {plan.rate}/s", e2e_p50, "ms"),
        Row(f"end to end via {via}: p99 at {plan.rate}/s", e2e_p99, "ms", target="<= 100 ms",
            passed=e2e_p99 <= 100),
    ]
    whole_rate = median(whole)
    publish = median(lim["publish"])
    rows.append(Row("whole path: webhooks/s accepted and stored", whole_rate, "/s", "raw confirmed publish",
                    publish, ">= 2,000/s", whole_rate >= 2000))
    rows.append(Row("verifier: deliveries/s stored", median(verifier), "/s", "consume+HINCRBY+ack",
                    median(lim["consume"])))
    api = _m(api_sat, rate)
    bare_json = _m(lim["json"], rate)
    rows += [
        Row("status API: reads/s at saturation", api, "/s", "bare JSON from Redis", bare_json,
            ">= 70% of bare JSON", api >= 0.7 * bare_json),
        Row("  (same, against redis-benchmark GET)", api, "/s", "redis-benchmark GET",
            median([x[0] for x in lim["redis_get"]])),
        Row(f"status API: p99 at {plan.rate}/s", _m(api_fixed, p99), "ms", "bare JSON from Redis",
            _m(lim["json_rate"], p99)),
    ]
    if sse is None:
        why = "(measurement failed: see the notes)" if use_sse else "(SSE not landed)"
        rows.append(Row("SSE: streams held by one status API process", None, "", note=why))
    else:
        rows += [
            Row("SSE: streams held by one status API process", sse["streams"], "", target=">= 10,000",
                passed=sse["streams"] >= 10_000),
            Row("SSE: RSS per stream", sse["rss_per_stream_kib"], "KiB", target="<= 32 KiB",
                passed=sse["rss_per_stream_kib"] <= 32),
            Row(f"SSE: one change to {sse['fanout']:,.0f} streams of one connection, p50 / last",
                sse["fanout_p50_ms"], "ms", note=f"/ {sse['fanout_all_ms']:.0f} ms (from the webhook's send)"),
        ]
    small, big = min(sweep), max(sweep)
    rows.append(Row(f"sweep: tick with 10 due among {big:,} pending", sweep[big], "ms",
                    f"same among {small:,}", sweep[small], "independent of N (<= 1.5x)",
                    sweep[big] <= 1.5 * sweep[small]))
    rows.append(Row("Redis memory per idle connection", memory, "B", target="<= 1,024 B", passed=memory <= 1024))
    return rows
