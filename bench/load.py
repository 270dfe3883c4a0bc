"""Load from ``bench.loadgen`` processes: what to send (specs) and what they saw (``LoadResult``)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.plan import PY, ROOT, Plan
from bench.stats import percentile
from shared.runner import die_with_parent


@dataclass
class LoadResult:
    sent: int
    accepted: int
    refused: int
    errors: int
    in_window: int
    statuses: dict[str, int]
    latencies_ms: list[float]
    records: list[tuple[int, float, int]]
    start_at: float
    duration_s: float
    cpu_s: float = 0.0  # CPU time the load generators used
    accepted_ms: list[float] = field(default_factory=list)  # latencies of the accepted requests alone
    retry_after: int = 0  # refusals that carried a Retry-After

    @classmethod
    def empty(cls, start_at: float = 0.0, duration_s: float = 0.0) -> LoadResult:
        return cls(0, 0, 0, 0, 0, {}, [], [], start_at, duration_s)

    @property
    def void(self) -> bool:
        return self.sent != self.accepted + self.refused

    @property
    def rate(self) -> float:
        return self.in_window / self.duration_s

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def p_accepted(self, q: float) -> float:
        return percentile(self.accepted_ms, q)

    def ledger(self) -> str:
        """sent = accepted + refused (+ unanswered), as one line."""
        unanswered = self.sent - self.accepted - self.refused
        return (f"sent {self.sent:,} = accepted {self.accepted:,} + refused {self.refused:,}"
                + (f" + UNANSWERED {unanswered:,}" if unanswered else ""))


async def run_load(spec: dict[str, Any], processes: int, tmp: str) -> LoadResult:
    """Start ``processes`` load generators, start them together, and merge what they saw."""
    procs = []
    for i in range(processes):
        path = os.path.join(tmp, f"load-{i}.json")
        with open(path, "wb") as fh:
            fh.write(orjson.dumps({**spec, "process_index": i, "processes": processes}))
        procs.append(await asyncio.create_subprocess_exec(
            PY, "-m", "bench.loadgen", path, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            preexec_fn=die_with_parent, limit=2**26,
        ))
    for p in procs:
        assert p.stdout is not None
        line = await asyncio.wait_for(p.stdout.readline(), 120)
        if line.strip() != b"ready":
            raise RuntimeError(f"load generator failed to start: {line!r}")
    start_at = time.time() + 0.3
    outputs = await asyncio.gather(*(p.communicate(f"{start_at}\n".encode()) for p in procs))
    parts = []
    for i, (out, _) in enumerate(outputs):
        if out.strip().splitlines()[-1:] != [b"done"]:
            raise RuntimeError(f"load generator {i} did not finish: {out[-300:]!r}")
        with open(os.path.join(tmp, f"load-{i}.json.result"), "rb") as fh:
            parts.append(orjson.loads(fh.read()))
    merged = LoadResult.empty(start_at, float(spec["duration_s"]))
    for part in parts:
        merged.accepted_ms.extend(part["accepted_ms"])
        for key in ("sent", "accepted", "refused", "errors", "in_window", "retry_after"):
            setattr(merged, key, getattr(merged, key) + part[key])
        for status, n in part["statuses"].items():
            merged.statuses[status] = merged.statuses.get(status, 0) + n
        merged.latencies_ms.extend(part["latencies_ms"])
        merged.records.extend(tuple(r) for r in part["records"])
        merged.cpu_s += part["cpu_s"]
    return merged


def hook_spec(plan: Plan, mode: str, urls: Sequence[str], secrets_: Sequence[str], **kw: Any) -> dict[str, Any]:
    """Signed webhooks to ``urls`` (one secret each): at ``plan.rate`` (or ``rate=``) or as fast as they
    are answered. ``seeded=`` (see ``bench.loadgen.Requests``) replaces the listed targets; ``body_bytes=``
    sets the body's size (default ``plan.body_bytes``)."""
    rate = float(kw.get("rate", plan.rate))
    duration = float(kw.get("duration_s", plan.duration_s))
    per_proc = int(6000 * duration / plan.load_procs) if mode == "saturate" else \
        int(rate * duration / plan.load_procs) + 1
    spec: dict[str, Any] = {
        "mode": mode, "kind": "webhook", "duration_s": duration,
        "targets": [{"url": u, "secret": s} for u, s in zip(urls, secrets_, strict=True)],
        "concurrency": max(1, plan.concurrency // plan.load_procs),
        "rate": rate, "presign": per_proc, "body_bytes": plan.body_bytes,
    }
    spec.update(kw)
    return spec


def get_spec(plan: Plan, mode: str, urls: Sequence[str], headers: dict[str, str], **kw: Any) -> dict[str, Any]:
    """GETs of ``urls`` with ``headers``: at ``plan.rate`` or as fast as they are answered."""
    spec: dict[str, Any] = {
        "mode": mode, "kind": "get", "duration_s": plan.duration_s, "headers": headers,
        "targets": [{"url": u} for u in urls], "rate": plan.rate,
        "concurrency": max(1, plan.concurrency // plan.load_procs),
    }
    spec.update(kw)
    return spec
