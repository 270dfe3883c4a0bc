"""Status API reads against the least a status API must do, in one run: ``python -m bench.reads``.

Starts the real status API (``services.status_api``) and the ``json-redis`` limit server of
``bench.limits`` (one process each, as the status API runs) on free ports and a fresh prefix, and drives
both with the bench's load generator (``bench.loadgen``, the same spec) at saturation, round after round,
each of ours right after the limit so both see the same box:

- ``limit``: ``GET /v1/connections/{id}`` on the bare aiohttp endpoint (HGETALL + orjson);
- ``service``: ``GET /v1/connections/{id}`` on the status API with the service token;
- ``browser``: the same with a browser token of the connections' account.

It prints, per round, requests per second, p99 and the status API's CPU per request, then the ranges
and each of ours as a share of the limit (the target is 80 %). ``--seed N`` first stores N more
connections directly in Redis (10 to an account) and reads those instead, so every read is of a
connection among N: nothing on the read path may grow with their number.

Settings come from the bench's ``BENCH_*`` variables (``bench.plan``): ``BENCH_ROUNDS``,
``BENCH_DURATION_S``, ``BENCH_CONCURRENCY``, ``BENCH_LOAD_PROCS``, ``BENCH_CONNECTIONS``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.load import LoadResult, get_spec, run_load
from bench.plan import PER_ACCOUNT, PY, TOKEN, Plan, free_port
from bench.processes import cpu_seconds, say, wait_http, wait_port
from bench.stats import median
from bench.system import System
from shared.crypto import DEV_SECRETS_KEY, SEALED_FIELDS, Sealer
from shared.models import new_id, now_ms
from shared.records import ConnectionRecord

TARGET = 0.8  # ours as a share of the limit
ACCOUNT = "acct-bench-reads"
SEED_BATCH = 1000


@dataclass
class Figures:
    rate: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # the server's CPU per answered request


def _range(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    return f"{median(values):{fmt}} (range {min(values):{fmt}}–{max(values):{fmt}})"


class Reads:
    def __init__(self, plan: Plan, tmp: str, seed: int) -> None:
        self.plan = plan
        self.tmp = tmp
        self.seed = seed
        self.system = System(plan, tmp)
        self.limit_port = free_port()
        self.ids: list[str] = []
        self.browser_token = ""
        self.figures = {name: Figures() for name in ("limit", "service", "browser")}
        self.notes: list[str] = []

    async def start(self) -> None:
        say(f"starting the status API and the json-redis limit (prefix {self.plan.prefix})")
        self.system.start_service("status_api")
        self.system.procs.start("json-redis", [
            PY, "-m", "bench.limits", "json-redis", "--port", str(self.limit_port), "--workers", "1",
            "--redis-url", self.plan.redis_url, "--prefix", self.plan.prefix,
        ])
        await wait_http(f"{self.system.api}/readyz")
        await wait_port(self.limit_port)
        conns = await self.system.create_connections(self.plan.connections, ACCOUNT)
        self.ids = [c.id for c in conns]
        if self.seed:
            say(f"storing {self.seed:,} more connections in Redis (10 to an account)")
            self.ids = await seed_connections(self.system, self.seed)
        self.browser_token = await self.mint(ACCOUNT if not self.seed else "acct-bench-seed-0")

    async def mint(self, account: str) -> str:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession(headers=headers) as session, session.post(
            f"{self.system.api}/v1/accounts/{account}/tokens", json={}
        ) as resp:
            if resp.status != 201:
                raise RuntimeError(f"could not mint a browser token: {resp.status} {await resp.text()}")
            return str((await resp.json())["token"])

    def urls(self, base: str, browser: bool) -> list[str]:
        # A browser token sees one account: with --seed, the ten connections of the first seeded account
        # (spread over the whole key space all the same: their ids are random).
        ids = self.ids[:10] if browser and self.seed else self.ids
        return [f"{base}/v1/connections/{cid}" for cid in ids]

    def spec(self, name: str) -> tuple[dict[str, Any], int]:
        """The load for ``name`` and the pid of the server it loads."""
        if name == "limit":
            base, headers, pid = f"http://127.0.0.1:{self.limit_port}", {}, self.system.procs.pid("json-redis")
        else:
            token = TOKEN if name == "service" else self.browser_token
            base, headers = self.system.api, {"Authorization": f"Bearer {token}"}
            pid = self.system.procs.pid("status_api")
        return get_spec(self.plan, "saturate", self.urls(base, name == "browser"), headers), pid

    async def measure(self, name: str) -> None:
        spec, pid = self.spec(name)
        before = cpu_seconds({"server": [pid]})["server"]
        result = await run_load(spec, self.plan.load_procs, self.tmp)
        used = cpu_seconds({"server": [pid]})["server"] - before
        self.check(name, result)
        figures = self.figures[name]
        figures.rate.append(result.rate)
        figures.p99_ms.append(result.p(99))
        figures.cpu_us.append(used / max(1, result.accepted) * 1e6)
        say(f"  {name:8} {result.rate:8,.0f} req/s  p99 {result.p(99):6.1f} ms  "
            f"server CPU {figures.cpu_us[-1]:5.0f} µs/request")

    def check(self, name: str, result: LoadResult) -> None:
        if result.refused or result.errors or result.void:
            self.notes.append(f"{name}: {result.refused} refused, {result.errors} errors ({result.statuses})")

    async def run(self) -> None:
        await self.start()
        for name in ("limit", "service", "browser"):  # warm-up: connections open, code paths loaded
            spec, _ = self.spec(name)
            await run_load({**spec, "duration_s": 1.0}, self.plan.load_procs, self.tmp)
        for n in range(self.plan.rounds):
            say(f"round {n + 1}/{self.plan.rounds}")
            for name in ("limit", "service", "browser"):
                await self.measure(name)

    def report(self) -> str:
        limit = self.figures["limit"]
        lines = [f"status API reads, {self.plan.rounds} round(s) of {self.plan.duration_s:g} s, concurrency "
                 f"{self.plan.concurrency}, {len(self.ids):,} connections read"
                 + (f" ({self.seed:,} seeded)" if self.seed else ""),
                 f"{'':9}{'req/s: median (range)':>28}{'p99 ms':>26}{'CPU µs/request':>22}{'share of limit':>24}"]
        for name, figures in self.figures.items():
            shares = [ours / lim for ours, lim in zip(figures.rate, limit.rate, strict=True) if lim]
            share = "-" if name == "limit" else _range([s * 100 for s in shares], ".0f") + " %"
            lines.append(f"{name:9}{_range(figures.rate, ',.0f'):>28}{_range(figures.p99_ms, '.1f'):>26}"
                         f"{_range(figures.cpu_us, '.0f'):>22}{share:>24}")
        for name in ("service", "browser"):
            shares = [o / lim for o, lim in zip(self.figures[name].rate, limit.rate, strict=True) if lim]
            ok = bool(shares) and median(shares) >= TARGET
            lines.append(f"{name} reads at {median(shares) * 100 if shares else 0:.0f} % of the limit "
                         f"(target ≥ {TARGET:.0%}): {'met' if ok else 'NOT met'}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


async def store_records(system: System, n: int, account_stem: str,
                        make: Callable[[str, str, int], ConnectionRecord]) -> list[str]:
    """``n`` connections made by ``make(id, account, now)``, stored as the status API stores them
    (secrets sealed; in their account's set; a pending one in the pending index), 10 to an account
    (``<account_stem>-<i>``), written in pipelines; returns their ids in account order."""
    sealer = Sealer((DEV_SECRETS_KEY,))  # the bench's status API runs without SECRETS_KEYS
    keys, now, ids = system.keys, now_ms(), []
    for start in range(0, n, SEED_BATCH):
        async with system.redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + SEED_BATCH)):
                cid, account = new_id(), f"{account_stem}-{i // PER_ACCOUNT}"
                record = make(cid, account, now)
                fields = {k: sealer.seal(str(v), cid) if k in SEALED_FIELDS else v for k, v in record.to_hash().items()}
                pipe.hset(keys.conn(cid), mapping=fields)
                pipe.sadd(keys.account(account), cid)
                if record.state == "pending":
                    pipe.zadd(keys.pending, {cid: record.pending_deadline_ms})
                ids.append(cid)
            await pipe.execute()
    return ids


async def seed_connections(system: System, n: int) -> list[str]:
    """``n`` pending connections (``store_records``)."""

    def pending(cid: str, account: str, now: int) -> ConnectionRecord:
        return ConnectionRecord(id=cid, account_id=account, provider="standard-webhooks", state="pending",
                                reason="awaiting_first_event", webhook_url=f"{system.receiver}/hooks/{cid}",
                                version=1, secret="whsec_" + cid, pending_deadline_ms=now + 3_600_000,
                                timeout_s=3600, created_at_ms=now, updated_at_ms=now)

    return await store_records(system, n, "acct-bench-seed", pending)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="store this many more connections and read those")
    args = parser.parse_args()
    plan = Plan.from_env()
    with tempfile.TemporaryDirectory(prefix="bench-reads-") as tmp:
        reads = Reads(plan, tmp, args.seed)
        try:
            await reads.run()
        finally:
            await reads.system.cleanup()
        print(reads.report())
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
