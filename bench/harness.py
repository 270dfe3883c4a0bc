"""The bench itself: each of our rows measured right after the limit that bounds it, round after round,
with every webhook accepted counted once by the verifier (or the run is void)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from typing import Any

import aiohttp
import orjson

from bench.e2e import match_changes
from bench.limit_runs import Limits
from bench.load import LoadResult, get_spec, hook_spec, run_load
from bench.plan import PER_ACCOUNT, PY, ROOT, Plan
from bench.processes import cpu_note, cpu_seconds, say, wait_http
from bench.sse_measure import measure_sse
from bench.sweep import sweep_cost
from bench.system import Conn, System
from bench.table import Row, build_rows
from shared.runner import die_with_parent


class Bench:
    def __init__(self, plan: Plan, tmp: str) -> None:
        self.plan = plan
        self.tmp = tmp
        self.system = System(plan, tmp)
        self.limits = Limits(self.system, self.load)
        self.accepted_verified = 0  # webhooks answered 202: the verifier must count exactly these
        self.notes: list[str] = []
        self.void: list[str] = []
        self.first_round = True

    def check(self, what: str, result: LoadResult) -> LoadResult:
        if result.void:
            self.void.append(f"{what}: sent {result.sent} != accepted {result.accepted} + refused "
                             f"{result.refused} ({result.statuses})")
        elif result.refused:
            self.notes.append(f"{what}: {result.refused} refused ({result.statuses})")
        return result

    async def load(self, what: str, spec: dict[str, Any]) -> LoadResult:
        return self.check(what, await run_load(spec, self.plan.load_procs, self.tmp))

    async def receiver_saturation(self) -> list[LoadResult]:
        """The receiver alone at saturation, as its limit was measured: the verifier is stopped, so the
        deliveries wait in the queue (it stores them afterwards, and they are counted then)."""
        urls, keys = [c.url for c in self.system.conns], [c.secret for c in self.system.conns]
        self.system.procs.stop("verifier")
        sats = [await self.load("receiver saturation", hook_spec(self.plan, "saturate", urls, keys))]
        self.accepted_verified += sum(r.accepted for r in sats)
        self.system.start_service("verifier")
        async with aiohttp.ClientSession() as session:
            await wait_http(f"http://127.0.0.1:{self.system.ports['verifier']}/readyz")
            await self.wait_applied(session, sum(r.accepted for r in sats))
        return sats

    async def whole_path(self) -> list[float]:
        """Everything running, the receiver saturated: webhooks accepted / time until all are stored."""
        whole = []
        urls, keys = [c.url for c in self.system.conns], [c.secret for c in self.system.conns]
        groups = self.system.cpu_groups()
        async with aiohttp.ClientSession() as session:
            before = await self.system.verifier_applied(session)
            cpu_before, wall_before = cpu_seconds(groups), time.monotonic()
            result = await self.load("whole path", hook_spec(self.plan, "saturate", urls, keys))
            self.accepted_verified += result.accepted
            done_at = await self.wait_applied(session, before + result.accepted)
            whole.append(result.accepted / (done_at - result.start_at) if done_at else float("nan"))
            if self.first_round:  # where the two cores went, during the first round
                used = {k: v - cpu_before[k] for k, v in cpu_seconds(groups).items()}
                used["load generator"] = result.cpu_s
                elapsed = done_at - result.start_at if done_at else time.monotonic() - wall_before
                wall = elapsed * (os.cpu_count() or 1)
                shares = ", ".join(f"{k} {v / wall:.0%}" for k, v in sorted(used.items(), key=lambda x: -x[1]))
                shares += f"; the rest (others on the box, idle) {1 - sum(used.values()) / wall:.0%}"
                self.notes.append(f"whole path, share of all CPUs from load start to the last store: {shares}"
                                  " (RabbitMQ and Redis are shared: anyone else's use counts too)")
        return whole

    async def wait_applied(self, session: aiohttp.ClientSession, target: int, timeout_s: float = 120) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await self.system.verifier_applied(session) >= target:
                return time.time()
            await asyncio.sleep(0.05)
        self.void.append(f"the verifier did not store {target} deliveries within {timeout_s}s")
        return 0.0

    async def fixed_rate_and_e2e(self, use_sse: bool) -> tuple[list[LoadResult], list[list[float]]]:
        fixed, e2e = [], []
        urls, keys = [c.url for c in self.system.conns], [c.secret for c in self.system.conns]
        async with aiohttp.ClientSession() as session:
            base = await self.system.versions(self.system.conns)
            before = await self.system.verifier_applied(session)
            listener = await self.start_listener(use_sse)
            groups = {**self.system.cpu_groups(), "change listener": [listener.pid]}
            cpu_before = cpu_seconds(groups)
            result = await self.load(f"receiver at {self.plan.rate}/s",
                                     hook_spec(self.plan, "rate", urls, keys, record=True))
            self.accepted_verified += result.accepted
            done_at = await self.wait_applied(session, before + result.accepted)
            if self.first_round and done_at:
                used = {k: v - cpu_before[k] for k, v in cpu_seconds(groups).items()}
                used["load generator"] = result.cpu_s
                self.notes.append(f"at {self.plan.rate}/s, CPU per webhook: " + cpu_note(used, result.accepted))
            await asyncio.sleep(0.3)
            changes = await self.stop_listener(listener)
            fixed.append(result)
            e2e.append(match_changes(result.records, base, [c.id for c in self.system.conns], changes))
        return fixed, e2e

    async def start_listener(self, use_sse: bool) -> asyncio.subprocess.Process:
        if use_sse:
            accounts = range((len(self.system.conns) + PER_ACCOUNT - 1) // PER_ACCOUNT)
            streams = ",".join(f"{self.system.api}/v1/accounts/acct-bench-{i}/stream" for i in accounts)
            args = ["sse", streams, self.system.token]
        else:
            args = ["pubsub", self.plan.redis_url, self.system.keys.changes]
        proc = await asyncio.create_subprocess_exec(
            PY, "-m", "bench.listener", *args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            preexec_fn=die_with_parent, limit=2**26,
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if line.strip() != b"ready":
            raise RuntimeError(f"the change listener did not start: {line!r}")
        await asyncio.sleep(0.2)
        return proc

    async def stop_listener(self, proc: asyncio.subprocess.Process) -> list[list[Any]]:
        out, _ = await asyncio.wait_for(proc.communicate(b"stop\n"), 60)
        return list(orjson.loads(out.strip().splitlines()[-1]))

    async def verifier_rate(self) -> list[float]:
        """Stop the verifier, queue N deliveries, start it, and time how fast it stores them."""
        rates = []
        n = self.plan.verifier_messages
        async with aiohttp.ClientSession() as session:
            self.system.procs.stop("verifier")
            await self.system.queue_deliveries(n)
            self.system.start_service("verifier")
            await wait_http(f"http://127.0.0.1:{self.system.ports['verifier']}/readyz")
            first, first_at = 0, 0.0
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                done = await self.system.verifier_applied(session)
                if done and not first_at:
                    first, first_at = done, time.perf_counter()
                if done >= n:
                    elapsed = time.perf_counter() - first_at
                    rates.append((n - first) / elapsed if elapsed > 0 else float("nan"))
                    break
                await asyncio.sleep(0.02)
            else:
                self.void.append(f"verifier: stored fewer than {n} deliveries in 120 s")
            self.accepted_verified += n
        return rates

    async def status_api(self) -> tuple[list[LoadResult], list[LoadResult]]:
        urls = [f"{self.system.api}/v1/connections/{c.id}" for c in self.system.conns]
        headers = {"Authorization": f"Bearer {self.system.token}"}
        sat = [await self.load("status API saturation", get_spec(self.plan, "saturate", urls, headers))]
        fixed = [await self.load(f"status API at {self.plan.rate}/s", get_spec(self.plan, "rate", urls, headers))]
        return sat, fixed

    async def memory_per_connection(self) -> float:
        conns = await self.system.create_connections(self.plan.memory_connections, "acct-bench-memory")
        k = self.system.keys
        async with self.system.redis.pipeline(transaction=False) as pipe:
            for c in conns:
                pipe.memory_usage(k.conn(c.id), samples=0)
            per_hash = await pipe.execute()
        pending_bytes = int(await self.system.redis.memory_usage(k.pending, samples=0) or 0)
        pending = pending_bytes / max(1, await self.system.redis.zcard(k.pending))
        account_key = k.account("acct-bench-memory")
        account = int(await self.system.redis.memory_usage(account_key, samples=0) or 0) / len(conns)
        return float(sum(int(x or 0) for x in per_hash) / len(conns) + pending + account)

    async def cleanup(self) -> None:
        await self.system.cleanup()

    async def run(self) -> list[Row]:
        say(f"starting the system (prefix {self.plan.prefix}, receiver workers {self.plan.receiver_workers})")
        await self.system.start_system()
        self.system.conns = await self.system.create_connections(self.plan.connections)
        use_sse = await self.system.sse_available()
        await self.limits.start_all()
        lim: dict[str, list[Any]] = {k: [] for k in ("bare", "minimal", "minimal_rate", "publish", "consume",
                                                      "redis_get", "json", "json_rate")}
        sat: list[LoadResult] = []
        whole: list[float] = []
        fixed: list[LoadResult] = []
        e2e: list[list[float]] = []
        verifier: list[float] = []
        api_sat: list[LoadResult] = []
        api_fixed: list[LoadResult] = []
        queue, count = f"{self.plan.prefix}.limit", self.plan.verifier_messages
        via = "SSE" if use_sse else "Redis pub/sub"
        # Each round measures every limit right before the row it bounds, so both see the same box
        # (others' load on a shared machine comes and goes).
        for n in range(self.plan.rounds):
            say(f"round {n + 1}/{self.plan.rounds}: receiver at saturation (bare aiohttp, minimal receiver, ours)")
            lim["bare"].append(await self.limits.measure("bare", "saturate"))
            lim["minimal"].append(await self.limits.measure("minimal-receiver", "saturate"))
            sat += await self.receiver_saturation()
            say(f"round {n + 1}: at {self.plan.rate}/s (minimal receiver; ours, end to end via {via})")
            lim["minimal_rate"].append(await self.limits.measure("minimal-receiver", "rate"))
            f, e = await self.fixed_rate_and_e2e(use_sse)
            fixed += f
            e2e += e
            say(f"round {n + 1}: whole path (raw confirmed publish; ours)")
            lim["publish"].append(await self.limits.loop("publish-loop", queue, count))
            whole += await self.whole_path()
            say(f"round {n + 1}: verifier (consume + HINCRBY + ack; ours)")
            lim["consume"].append(await self.limits.loop("consume-loop", queue, count))
            verifier += await self.verifier_rate()
            say(f"round {n + 1}: status API (redis-benchmark GET, bare JSON from Redis, ours)")
            lim["redis_get"].append(self.limits.redis_benchmark())
            lim["json"].append(await self.limits.measure("json-redis", "saturate"))
            lim["json_rate"].append(await self.limits.measure("json-redis", "rate"))
            s_, f_ = await self.status_api()
            api_sat += s_
            api_fixed += f_
            self.first_round = False
        self.limits.stop_all()
        say("ours: SSE streams")
        sse = None
        try:
            sse = await asyncio.wait_for(self.sse_rows(), 240) if use_sse else None
        except (TimeoutError, RuntimeError, OSError) as exc:
            self.notes.append(f"SSE: the measurement failed ({type(exc).__name__}: {exc})")
        say(f"ours: timeout sweep with {self.plan.sweep_pending:,} pending")
        sweep = await sweep_cost(self.plan, self.void)
        say("ours: Redis memory per idle connection")
        memory = await self.memory_per_connection()
        stored = await self.system.events_stored(self.system.conns)
        if stored != self.accepted_verified:
            self.void.append(f"double or lost counting: {self.accepted_verified} accepted, {stored} stored")
        else:
            self.notes.append(f"counting: {stored:,} webhooks accepted, {stored:,} counted by the verifier "
                              "(none lost, none twice)")
        return build_rows(self.plan, lim, sat, whole, fixed, e2e, use_sse, verifier, api_sat, api_fixed, sse,
                          sweep, memory)

    async def send_one(self, conn: Conn) -> None:
        await self.system.send_one(conn)
        self.accepted_verified += 1

    async def sse_rows(self) -> dict[str, float] | None:
        return await measure_sse(self.system, self.plan.sse_streams, self.plan.sse_fanout, self.send_one, self.notes)
