"""The results: one ``Row`` per figure beside the limit measured in the same run, the CPU table, and
the rows built from what a run measured (``Bench.m``: one value per round, the median shown)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.stats import median

if TYPE_CHECKING:
    from bench.harness import Bench


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

    def ratio(self) -> str:
        if self.value is None or not self.limit or self.value != self.value or self.limit != self.limit:
            return ""
        return f"{self.value / self.limit:.0%}"


def at_least(value: float, limit: float, share: float) -> bool | None:
    """value >= share x limit; None when either was not measured."""
    if value != value or limit != limit:
        return None
    return value >= share * limit


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
    if unit == "%":
        return f"{value:.1%}"
    return f"{value:,.0f} {unit}".strip()


def grid(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    """A Markdown table, columns padded."""
    rows = [tuple(header), *[tuple(line) for line in lines]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    out = []
    for n, line in enumerate(rows):
        out.append("| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def render(rows: list[Row]) -> str:
    lines = []
    for r in rows:
        limit = f"{r.limit_name} {fmt(r.limit, r.unit)}" if r.limit_name else ""
        met = "" if r.passed is None else ("yes" if r.passed else "NO")
        lines.append((r.name, fmt(r.value, r.unit) + (f" {r.note}" if r.note else ""), limit, r.ratio(),
                      r.target, met))
    return grid(("row", "measured", "limit (same run)", "ratio", "target", "met"), lines)


def cpu_table(columns: dict[str, Sequence[dict[str, float]]], names: dict[str, dict[str, str]] | None = None) -> str:
    """CPU µs per webhook by process group, one column per setup (the median over rounds)."""
    groups: list[str] = []
    for runs in columns.values():
        for run in runs:
            groups += [g for g in run if g not in groups]
    names = names or {}
    lines = []
    for g in groups:
        cells = []
        for col, runs in columns.items():
            values = [run[g] for run in runs if g in run]
            label = names.get(col, {}).get(g, "")
            cells.append(f"{median(values):,.0f}" + (f" ({label})" if label else "") if values else "-")
        lines.append((g, *cells))
    totals = [f"{median([sum(v for k, v in run.items() if not k.startswith('p99')) for run in runs]):,.0f}"
              if runs else "-" for runs in columns.values()]
    lines.append(("all", *totals))
    return grid(("CPU µs per webhook", *columns), lines)


def build_rows(b: Bench) -> list[Row]:
    m, plan = b.m, b.plan

    def med(key: str) -> float:
        return median(m.get(key, []))

    rows: list[Row] = []
    for w in [b.base, *getattr(b, "variants_done", [])]:
        k, label = w.key, w.label
        recv, minimal = med(f"{k}:recv"), med(f"{k}:min_recv")
        rows.append(Row(f"receiver at saturation ({label})", recv, "/s", "minimal receiver", minimal,
                        ">= 90% of it", at_least(recv, minimal, 0.9)))
        if w is b.base:
            rows.append(Row("  (same, against a bare aiohttp 202)", recv, "/s", "bare aiohttp", med("bare")))
        whole, pipe = med(f"{k}:whole"), med(f"{k}:min_pipe")
        rows.append(Row(f"whole path, accepted and stored ({label})", whole, "/s", "minimal pipeline", pipe,
                        ">= 80% of it", at_least(whole, pipe, 0.8)))
        if f"{k}:api" in m:
            api, bare_json = med(f"{k}:api"), med(f"{k}:json")
            rows.append(Row(f"status API reads at saturation ({label})", api, "/s", "bare JSON from Redis",
                            bare_json, ">= 80% of it", at_least(api, bare_json, 0.8)))
        p = "" if w is b.base else f"{k}:"
        if f"{p}rate" in m:
            rate, e2e = med(f"{p}rate"), med(f"{p}e2e_p99")
            start, end = med(f"{p}backlog_start"), med(f"{p}backlog_end")
            seen = f" ({med(f'{p}e2e_n'):,.0f} webhooks seen)" if w is not b.base else ""
            rows += [
                Row(f"  at {rate:,.0f}/s open loop (half the minimal pipeline): webhook -> 202 p99",
                    med(f"{p}recv_p99_rate"), "ms", "minimal pipeline", med(f"{p}min_pipe_p99")),
                Row(f"  at {rate:,.0f}/s: refused (503, shed)", med(f"{p}refused_rate"), "%"),
                Row(f"  at {rate:,.0f}/s: webhook -> status on SSE, p50", med(f"{p}e2e_p50"), "ms"),
                Row(f"  at {rate:,.0f}/s: webhook -> status on SSE, p99{seen}", e2e, "ms", target="<= 50 ms",
                    passed=None if e2e != e2e else e2e <= 50),
                Row(f"  at {rate:,.0f}/s: queue backlog at start -> end (max {med(f'{p}backlog_max'):,.0f})", end,
                    "msgs", note=f"(from {start:,.0f})", target="not growing",
                    passed=None if end != end else end - start <= max(50.0, 0.05 * rate)),
            ]
        if w is b.base:
            over = med("over_rate")
            rows += [
                Row(f"  overload at {over:,.0f}/s (2x the minimal pipeline): 503 with Retry-After",
                    med("over_shed"), "%", target="sheds load", passed=None if over != over else med("over_shed") > 0),
                Row(f"  overload at {over:,.0f}/s: p99 of the 202s", med("over_p99_accepted"), "ms",
                    note=f"({med('over_accepted'):,.0f}/s accepted)"),
                Row(f"  overload at {over:,.0f}/s: no answer (connection errors)", med("over_unanswered"), "%"),
                Row(f"status API p99 at {plan.rate}/s", med("api_p99"), "ms", "bare JSON from Redis", med("json_p99")),
                Row("  (status API, against redis-benchmark GET)", med("base:api"), "/s", "redis-benchmark GET",
                    med("redis_get")),
                Row("verifier: deliveries/s stored (queue filled first)", med("verifier"), "/s", "consume+HINCRBY+ack",
                    med("consume")),
            ]
    sse = getattr(b, "sse", None)
    if sse is not None:
        rows += [
            Row("SSE: streams held by one status API process", sse["streams"], "", target=">= 10,000",
                passed=sse["streams"] >= 10_000),
            Row("SSE: RSS per stream", sse["rss_per_stream_kib"], "KiB", target="<= 32 KiB",
                passed=sse["rss_per_stream_kib"] <= 32),
            Row(f"SSE: one change to {sse['fanout']:,.0f} streams of one connection, p50 / last",
                sse["fanout_p50_ms"], "ms", note=f"/ {sse['fanout_all_ms']:.0f} ms (from the webhook's send)"),
        ]
    sweep = getattr(b, "sweep", None)
    if sweep:
        small, big = min(sweep), max(sweep)
        rows.append(Row(f"sweep: tick with 10 due among {big:,} pending", sweep[big], "ms",
                        f"same among {small:,}", sweep[small], "independent of N (<= 1.5x)",
                        sweep[big] <= 1.5 * sweep[small]))
    memory = getattr(b, "memory", None)
    if memory is not None:
        rows.append(Row("Redis memory per idle connection (made through the API)", memory, "B",
                        target="<= 1,024 B", passed=memory <= 1024))
    return rows
