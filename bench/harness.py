"""The bench itself: each of our rows measured right after the limit that bounds it, round after round,
with every webhook accepted counted once (a ledger per load), or the run is void."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis

from bench.e2e import match_changes
from bench.limit_runs import HookKw, Limits
from bench.load import LoadResult, get_spec, hook_spec, run_load
from bench.plan import KIB, PER_ACCOUNT, PY, ROOT, Plan
from bench.processes import cpu_seconds, say, wait_http
from bench.seed import Seeded, seed_to, used_memory
from bench.sse_measure import measure_sse
from bench.stats import percentile
from bench.sweep import sweep_cost
from bench.system import Conn, System
from shared.crypto import DEV_SECRETS_KEY, Sealer
from shared.runner import die_with_parent
from shared.store import Store


@dataclass(frozen=True)
class Workload:
    """What a load sends: to how many connections (the API-made ones, or seeded ones) and how big."""

    key: str
    connections: int
    body_bytes: int
    seeded: bool = False

    @property
    def label(self) -> str:
        size = f"{self.body_bytes // KIB} KiB" if self.body_bytes >= KIB else f"{self.body_bytes} B"
        return f"{self.connections:,} conns, {size}"


WATCHED = 5_000  # seeded connections watched end to end (500 account streams; the traffic spreads over all)


def per_webhook_us(used: dict[str, float], webhooks: int) -> dict[str, float]:
    """CPU seconds by process group -> microseconds per webhook."""
    return {k: v / max(1, webhooks) * 1e6 for k, v in used.items()}


async def redis_commands(client: aioredis.Redis) -> dict[str, tuple[int, int]]:
    """Calls and microseconds so far of every command Redis has run (``INFO commandstats``)."""
    info = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for name, v in info.items()}


def redis_commands_line(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], webhooks: int,
                        top: int = 8) -> str:
    """The commands that took most of Redis's time between two ``redis_commands``, per webhook."""
    spent = {name: (calls - before.get(name, (0, 0))[0], usec - before.get(name, (0, 0))[1])
             for name, (calls, usec) in after.items()}
    ranked = sorted(((n, c, u) for n, (c, u) in spent.items() if c > 0), key=lambda x: -x[2])[:top]
    return ", ".join(f"{n} {c / webhooks:.2f}x {u / webhooks:.1f} µs" for n, c, u in ranked)


class Bench:
    def __init__(self, plan: Plan, tmp: str) -> None:
        self.plan = plan
        self.tmp = tmp
        self.system = System(plan, tmp)
        self.limits = Limits(self.system, self.load)
        self.accepted_verified = 0  # webhooks answered 202 to the API-made connections: the final check
        self.notes: list[str] = []
        self.ledgers: list[str] = []
        self.void: list[str] = []
        self.first_round = True
        self.m: dict[str, list[float]] = defaultdict(list)  # every figure, by key, one per round
        self.cpu: dict[str, list[dict[str, float]]] = defaultdict(list)  # µs per webhook by process
        self.seeded = Seeded()
        keys = os.environ.get("SECRETS_KEYS")
        sealer = Sealer(tuple(k.strip() for k in keys.split(",") if k.strip()) if keys else (DEV_SECRETS_KEY,))
        self.store = Store(self.system.redis, plan.prefix, sealer)
        self.base = Workload("base", plan.connections, plan.body_bytes)
        self.variants_done: list[Workload] = []
        self.use_sse = False
        self.sse: dict[str, float] | None = None
        self.sweep: dict[int, float] = {}
        self.memory = float("nan")

    # --- loads and their ledgers -----------------------------------------------------------------

    def check(self, what: str, result: LoadResult) -> LoadResult:
        if result.void and what.startswith("overload"):  # past saturation, a dropped connection is a finding
            self.notes.append(f"{what}: {result.sent - result.accepted - result.refused} requests got no answer "
                              f"(connection errors: {result.statuses})")
        elif result.void:
            self.void.append(f"{what}: sent {result.sent} != accepted {result.accepted} + refused "
                             f"{result.refused} ({result.statuses})")
        elif result.refused and not what.startswith("overload"):
            self.notes.append(f"{what}: {result.refused} refused ({result.statuses})")
        return result

    async def load(self, what: str, spec: dict[str, Any]) -> LoadResult:
        return self.check(what, await run_load(spec, self.plan.load_procs, self.tmp))

    def ledger(self, what: str, result: LoadResult, counted: int) -> None:
        """sent = accepted + refused, and accepted = counted (stored by the verifier or the limit's consumer).
        A refused webhook that failed verification is stored too (as a rejected delivery), so with
        refusals the count may exceed the accepted by at most the refused."""
        exact = counted == result.accepted
        ok = exact or result.accepted < counted <= result.accepted + result.refused
        sign = "=" if exact else ("<=" if ok else "!=")
        extra = f" (<= accepted + refused {result.accepted + result.refused:,})" if sign == "<=" else ""
        self.ledgers.append(f"{what}: {result.ledger()}; accepted {result.accepted:,} {sign} counted {counted:,}"
                            + extra + ("" if ok else "  <- VOID"))
        if not ok:
            self.void.append(f"{what}: accepted {result.accepted} but counted {counted}")

    def hook_kw(self, w: Workload) -> HookKw:
        """The webhooks' targets of ``w`` on the given receivers (``secret``: the limit's own)."""

        def kw(bases: list[str], secret: str | None) -> dict[str, Any]:
            if w.seeded:
                return {"targets": [], "body_bytes": w.body_bytes,
                        "seeded": self.seeded.spec([f"{b}/hooks/" for b in bases], w.connections, secret)}
            conns = self.system.conns[: w.connections]
            return {"body_bytes": w.body_bytes,
                    "targets": [{"url": f"{bases[i % len(bases)]}/hooks/{c.id}", "secret": secret or c.secret}
                                for i, c in enumerate(conns)]}

        return kw

    def get_kw(self, w: Workload, base: str) -> dict[str, Any]:
        if w.seeded:
            return {"targets": [], "seeded": self.seeded.spec([f"{base}/v1/connections/"], w.connections)}
        return {"targets": [{"url": f"{base}/v1/connections/{c.id}"} for c in self.system.conns[: w.connections]]}

    def ours(self, w: Workload, mode: str, **kw: Any) -> dict[str, Any]:
        return hook_spec(self.plan, mode, [], [], **self.hook_kw(w)(self.system.receiver_bases, None), **kw)

    def counts_for_final_check(self, w: Workload, accepted: int) -> None:
        if not w.seeded:
            self.accepted_verified += accepted

    async def wait_count(self, count: Callable[[], Awaitable[int]], target: int, what: str,
                         timeout_s: float = 120) -> float:
        """Wall time when ``count()`` reached ``target`` (0.0, and the run void, if it did not in time)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await count() >= target:
                return time.time()
            await asyncio.sleep(0.05)
        self.void.append(f"{what}: {target} not stored within {timeout_s:.0f} s")
        return 0.0

    async def applied(self) -> int:
        async with aiohttp.ClientSession() as session:
            return await self.system.verifier_applied(session)

    async def settled(self, count: Callable[[], Awaitable[int]], before: int, result: LoadResult,
                      what: str) -> float:
        """Wait until the accepted ones are stored; note the ledger; the wall time they all were."""
        done_at = await self.wait_count(count, before + result.accepted, what)
        await asyncio.sleep(0.2)  # anything counted twice would show now
        self.ledger(what, result, await count() - before)
        return done_at

    # --- the rows ---------------------------------------------------------------------------------

    async def receiver_saturation(self, w: Workload) -> None:
        """The receiver alone at saturation, like its limit: the verifier is stopped, so the deliveries
        wait in the queue (it stores them afterwards, and they are counted then). Limits first."""
        if w is self.base:
            self.m["bare"].append((await self.limits.measure("bare", "saturate", self.hook_kw(w))).rate)
        self.m[f"{w.key}:min_recv"].append(
            (await self.limits.measure("minimal-receiver", "saturate", self.hook_kw(w))).rate)
        self.system.procs.stop("verifier")
        result = await self.load(f"receiver saturation ({w.label})", self.ours(w, "saturate"))
        self.m[f"{w.key}:recv"].append(result.rate)
        self.system.start_service("verifier")
        await wait_http(f"http://127.0.0.1:{self.system.ports['verifier']}/readyz")
        await self.settled(self.applied, 0, result, f"receiver at saturation, verifier stopped ({w.label})")
        self.counts_for_final_check(w, result.accepted)

    async def whole_path(self, w: Workload) -> float:
        """Everything running, the receiver saturated: webhooks accepted / time until all are stored, next
        to the minimal pipeline measured the same way. Returns the minimal pipeline's capacity."""
        before = await self.limits.pipeline_counted()
        lim_groups = self.limits.pipeline_cpu_groups()
        lim_cpu_before = cpu_seconds(lim_groups)
        lim = await self.limits.measure("pipeline-receiver", "saturate", self.hook_kw(w))
        lim_done = await self.settled(self.limits.pipeline_counted, before, lim, f"minimal pipeline ({w.label})")
        capacity = lim.accepted / (lim_done - lim.start_at) if lim_done else float("nan")
        self.m[f"{w.key}:min_pipe"].append(capacity)
        lim_used = {k: v - lim_cpu_before[k] for k, v in cpu_seconds(lim_groups).items()}
        groups = self.system.cpu_groups()
        before = await self.applied()
        commands_before = await redis_commands(self.system.redis)
        cpu_before, wall_before = cpu_seconds(groups), time.monotonic()
        result = await self.load(f"whole path ({w.label})", self.ours(w, "saturate"))
        done_at = await self.settled(self.applied, before, result, f"whole path ({w.label})")
        if self.first_round and w is self.base and result.accepted:
            self.notes.append("whole path at saturation, Redis's own time per webhook by command (INFO "
                              "commandstats; a script's time includes the commands it runs): "
                              + redis_commands_line(commands_before, await redis_commands(self.system.redis),
                                                    result.accepted))
        self.counts_for_final_check(w, result.accepted)
        self.m[f"{w.key}:whole"].append(result.accepted / (done_at - result.start_at) if done_at else float("nan"))
        used = {k: v - cpu_before[k] for k, v in cpu_seconds(groups).items()}
        used["load generator"] = result.cpu_s
        if w is self.base and done_at and lim_done:  # the CPU table at saturation: where the gap is
            self.cpu["saturated ours"].append(per_webhook_us(used, result.accepted))
            self.cpu["saturated minimal"].append(per_webhook_us({**lim_used, "load generator": lim.cpu_s},
                                                                lim.accepted))
        if self.first_round and w is self.base:  # where the two cores went, during the first round
            elapsed = done_at - result.start_at if done_at else time.monotonic() - wall_before
            wall = elapsed * (os.cpu_count() or 1)
            shares = ", ".join(f"{k} {v / wall:.0%}" for k, v in sorted(used.items(), key=lambda x: -x[1]))
            shares += f"; the rest (others on the box, idle) {1 - sum(used.values()) / wall:.0%}"
            self.notes.append(f"whole path, share of all CPUs from load start to the last store: {shares}")
        return capacity

    def watched(self, w: Workload) -> tuple[list[str], list[str]]:
        """The connections whose status the end-to-end row watches on SSE, and their accounts (whose
        streams the listener holds): all of the API-made ones; of seeded ones the first ``WATCHED``."""
        if w.seeded:
            ids = [self.seeded.cid(i) for i in range(min(w.connections, WATCHED))]
            return ids, sorted({self.seeded.account(i) for i in range(len(ids))})
        ids = [c.id for c in self.system.conns[: w.connections]]
        return ids, [f"acct-bench-{i}" for i in range((len(ids) + PER_ACCOUNT - 1) // PER_ACCOUNT)]

    async def at_rate(self, w: Workload, rate: float) -> None:
        """Open loop at ``rate``: the minimal pipeline (its CPU per webhook, its receiver's p99), then ours
        (CPU per webhook, receiver p99, webhook -> status on an SSE stream, the queue's backlog)."""
        key = "" if w is self.base else f"{w.key}:"
        groups = self.limits.pipeline_cpu_groups()
        before, cpu_before = await self.limits.pipeline_counted(), cpu_seconds(groups)
        lim = await self.limits.measure("pipeline-receiver", "rate", self.hook_kw(w), rate=rate)
        await self.settled(self.limits.pipeline_counted, before, lim, f"minimal pipeline at {rate:,.0f}/s")
        used = {k: v - cpu_before[k] for k, v in cpu_seconds(groups).items()}
        if w is self.base:
            self.cpu["minimal"].append(per_webhook_us({**used, "load generator": lim.cpu_s}, lim.accepted))
        self.m[f"{key}min_pipe_p99"].append(lim.p(99))

        ids, accounts = self.watched(w)
        base = await self.system.versions(ids)
        before = await self.applied()
        listener = await self.start_listener(self.use_sse, accounts)
        groups = {**self.system.cpu_groups(), "change listener": [listener.pid]}
        cpu_before = cpu_seconds(groups)
        samples: list[tuple[float, int]] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(self.sample_backlog(samples, stop))
        result = await self.load(f"ours at {rate:,.0f}/s", self.ours(w, "rate", rate=rate, record=True))
        stop.set()
        await sampler
        done_at = await self.settled(self.applied, before, result, f"whole path at {rate:,.0f}/s ({w.label})")
        self.counts_for_final_check(w, result.accepted)
        used = {k: v - cpu_before[k] for k, v in cpu_seconds(groups).items()}
        if done_at and w is self.base:
            self.cpu["ours"].append(per_webhook_us({**used, "load generator": result.cpu_s}, result.accepted))
        await asyncio.sleep(0.3)
        changes = await self.stop_listener(listener)
        records = [r for r in result.records if r[0] < len(ids)]
        e2e = match_changes(records, base, ids, changes)
        self.m[f"{key}rate"].append(rate)
        self.m[f"{key}recv_p99_rate"].append(result.p(99))
        self.m[f"{key}refused_rate"].append(result.refused / max(1, result.sent))
        self.m[f"{key}e2e_p50"].append(percentile(e2e, 50))
        self.m[f"{key}e2e_p99"].append(percentile(e2e, 99))
        self.m[f"{key}e2e_n"].append(len(e2e))
        window = [d for t, d in samples if result.start_at <= t <= result.start_at + result.duration_s]
        if window:
            self.m[f"{key}backlog_start"].append(window[0])
            self.m[f"{key}backlog_end"].append(window[-1])
            self.m[f"{key}backlog_max"].append(max(window))

    async def sample_backlog(self, out: list[tuple[float, int]], stop: asyncio.Event) -> None:
        while not stop.is_set():
            out.append((time.time(), await self.system.queue_depth()))
            try:
                await asyncio.wait_for(stop.wait(), 0.25)
            except TimeoutError:
                pass

    async def overload(self, w: Workload, rate: float) -> None:
        """Open loop well past capacity: what the receiver does (sheds with 503 + Retry-After, or queues)."""
        before = await self.applied()
        # Many connections at once, as many providers would open: the client must not be what queues.
        result = await self.load(f"overload at {rate:,.0f}/s", self.ours(w, "rate", rate=rate, max_connections=2048))
        await self.settled(self.applied, before, result, f"overload at {rate:,.0f}/s ({w.label})")
        self.counts_for_final_check(w, result.accepted)
        self.m["over_rate"].append(rate)
        self.m["over_accepted"].append(result.accepted / result.duration_s)
        self.m["over_shed"].append(result.retry_after / max(1, result.sent))
        self.m["over_p99_accepted"].append(result.p_accepted(99))
        self.m["over_refused"].append(result.refused / max(1, result.sent))
        self.m["over_unanswered"].append((result.sent - result.accepted - result.refused) / max(1, result.sent))
        self.notes.append(f"overload at {rate:,.0f}/s: answers {dict(sorted(result.statuses.items()))}, "
                          f"{result.retry_after:,} refusals with Retry-After")

    async def start_listener(self, use_sse: bool, accounts: list[str]) -> asyncio.subprocess.Process:
        if use_sse:
            streams = ",".join(f"{self.system.api}/v1/accounts/{a}/stream" for a in accounts)
            args = ["sse", streams, self.system.token]
        else:
            args = ["pubsub", self.plan.redis_url, self.system.keys.changes]
        proc = await asyncio.create_subprocess_exec(
            PY, "-m", "bench.listener", *args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            preexec_fn=die_with_parent, limit=2**26,
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 120)
        if line.strip() != b"ready":
            raise RuntimeError(f"the change listener did not start: {line!r}")
        await asyncio.sleep(0.2)
        return proc

    async def stop_listener(self, proc: asyncio.subprocess.Process) -> list[list[Any]]:
        out, _ = await asyncio.wait_for(proc.communicate(b"stop\n"), 60)
        return list(orjson.loads(out.strip().splitlines()[-1]))

    async def verifier_rate(self) -> None:
        """Stop the verifier, queue N deliveries, start it, and time how fast it stores them."""
        queue, n = f"{self.plan.prefix}.limit", self.plan.verifier_messages
        # The publish loop fills the queue the consume loop drains (and shows what one quorum queue takes).
        self.m["publish"].append(await self.limits.loop("publish-loop", queue, n))
        self.m["consume"].append(await self.limits.loop("consume-loop", queue, n))
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
                    self.m["verifier"].append((n - first) / elapsed if elapsed > 0 else float("nan"))
                    break
                await asyncio.sleep(0.02)
            else:
                self.void.append(f"verifier: stored fewer than {n} deliveries in 120 s")
            self.accepted_verified += n

    async def status_api(self, w: Workload) -> None:
        """Reads of a connection's status at saturation, next to a bare JSON endpoint on the same keys."""
        headers = {"Authorization": f"Bearer {self.system.token}"}
        get_kw = self.get_kw(w, self.limits.urls["json-redis"])
        self.m[f"{w.key}:json"].append((await self.limits.measure("json-redis", "saturate", self.hook_kw(w),
                                                                   get_kw)).rate)
        ours = self.get_kw(w, self.system.api)
        sat = await self.load(f"status API saturation ({w.label})",
                              get_spec(self.plan, "saturate", [], headers, **ours))
        self.m[f"{w.key}:api"].append(sat.rate)
        if w is self.base:
            self.m["redis_get"].append(self.limits.redis_benchmark()[0])
            lim = await self.limits.measure("json-redis", "rate", self.hook_kw(w), get_kw)
            self.m["json_p99"].append(lim.p(99))
            fixed = await self.load(f"status API at {self.plan.rate}/s",
                                    get_spec(self.plan, "rate", [], headers, **ours))
            self.m["api_p99"].append(fixed.p(99))

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

    async def seed(self, count: int) -> float:
        """Seeded connections up to ``count``; Redis bytes per connection added (0 if none were)."""
        if count <= self.seeded.count:
            return float("nan")
        had, before = self.seeded.count, await used_memory(self.system.redis)
        took = await seed_to(self.system.redis, self.store, self.seeded, count, self.system.receiver)
        added = count - had
        say(f"seeded {added:,} connections in {took:.1f} s")
        return (await used_memory(self.system.redis) - before) / added

    async def cleanup(self) -> None:
        await self.system.cleanup()

    # --- the run ----------------------------------------------------------------------------------

    async def start(self) -> None:
        say(f"starting the system (prefix {self.plan.prefix}, receiver workers {self.plan.receiver_workers})")
        await self.system.start_system()
        self.system.conns = await self.system.create_connections(self.plan.connections)
        self.use_sse = await self.system.sse_available()
        await self.limits.start_all()

    async def rounds(self) -> None:
        """The main rows, ``plan.rounds`` times. Each round measures every limit right before the row it
        bounds, so both see the same box (others' load on a shared machine comes and goes)."""
        plan, w = self.plan, self.base
        for n in range(plan.rounds):
            say(f"round {n + 1}/{plan.rounds}: receiver at saturation (bare aiohttp, minimal receiver, ours)")
            await self.receiver_saturation(w)
            say(f"round {n + 1}: whole path at saturation (minimal pipeline, ours)")
            capacity = await self.whole_path(w)
            half = capacity / 2 if capacity == capacity else float(plan.rate)
            say(f"round {n + 1}: open loop at {half:,.0f}/s, half the minimal pipeline (minimal pipeline, ours)")
            await self.at_rate(w, half)
            say(f"round {n + 1}: overload at {4 * half:,.0f}/s, twice the minimal pipeline")
            await self.overload(w, 4 * half)
            say(f"round {n + 1}: verifier (consume + HINCRBY + ack; ours)")
            await self.verifier_rate()
            say(f"round {n + 1}: status API (redis-benchmark GET, bare JSON from Redis, ours)")
            await self.status_api(w)
            self.first_round = False

    async def streams(self) -> None:
        """Streams held by one status API process and their memory: measured before anything else opens
        many streams in that process (its allocator would keep and reuse their memory)."""
        say("ours: SSE streams")
        try:
            self.sse = await asyncio.wait_for(self.sse_rows(), 240) if self.use_sse else None
        except (TimeoutError, RuntimeError, OSError) as exc:
            self.notes.append(f"SSE: the measurement failed ({type(exc).__name__}: {exc})")

    async def finish(self) -> None:
        """The rows that need no limit server: the sweep, memory per idle connection."""
        plan = self.plan
        self.limits.stop_all()
        say(f"ours: timeout sweep with {plan.sweep_pending:,} pending")
        self.sweep = await sweep_cost(plan, self.void)
        say("ours: Redis memory per idle connection")
        self.memory = await self.memory_per_connection()

    async def final_check(self) -> None:
        stored = await self.system.events_stored(self.system.conns)
        if stored != self.accepted_verified:
            self.void.append(f"double or lost counting: {self.accepted_verified} accepted, {stored} stored")
        else:
            self.notes.append(f"counting over the whole run: {stored:,} webhooks accepted for the API-made "
                              f"connections, {stored:,} counted in their records (none lost, none twice)")

    async def variants(self) -> None:
        """The targets again with many connections (seeded, spread, cache misses included) and with big
        bodies: one round each."""
        many = Workload("many", self.plan.scaled_connections, self.plan.body_bytes, seeded=True)
        big = Workload("big", self.plan.connections, self.plan.big_body_bytes)
        say(f"seeding {many.connections:,} connections")
        await self.seed(many.connections)
        self.variants_done = [many, big]
        for v in (many, big):
            say(f"{v.label}: receiver at saturation, whole path, open loop at half the minimal pipeline"
                + (", status API" if v is many else ""))
            await self.receiver_saturation(v)
            capacity = await self.whole_path(v)
            await self.at_rate(v, capacity / 2 if capacity == capacity else float(self.plan.rate))
            if v is many:
                await self.status_api(v)

    async def send_one(self, conn: Conn) -> None:
        await self.system.send_one(conn)
        self.accepted_verified += 1

    async def sse_rows(self) -> dict[str, float] | None:
        return await measure_sse(self.system, self.plan.sse_streams, self.plan.sse_fanout, self.send_one, self.notes)
