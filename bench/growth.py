"""How cost grows: throughput and p99 against the number of connections, the body size and the open
streams, and Redis memory per connection (idle, and with a full deliveries list). Each series is printed
as a table with its growth exponent (``bench.stats.growth_exponent``) and drawn (``bench.plots``).

Every point measures ours only (the limits are in the main rows): the whole path at saturation for
``grow_duration_s`` (webhooks accepted / time until all are stored), then open loop at half that rate
for the p99 (webhook -> 202, or for the streams series webhook -> the status on its SSE stream).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aio_pika
import orjson

from bench.e2e import match_changes
from bench.load import LoadResult
from bench.plan import KIB, PY, ROOT
from bench.plots import draw
from bench.processes import say
from bench.series import Series
from bench.stats import growth_exponent, percentile
from shared.broker import ROUTING_KEY, Topology
from shared.models import DeliveryMessage, new_id, now_ms
from shared.runner import die_with_parent

if TYPE_CHECKING:
    from bench.harness import Bench

LIST_LENGTH = 50  # the deliveries list keeps the last 50
DEDUPE = "dedupe keys (72 h)"


class Growth:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.plan = bench.plan
        self.d = self.plan.grow_duration_s
        self.connections = Series("connections", "connections", "p99 ms, webhook -> 202")
        self.bodies = Series("body size", "body size (KiB)", "p99 ms, webhook -> 202")
        self.streams = Series("open streams", "open SSE streams", "p99 ms, webhook -> SSE")
        self.memory_x: list[float] = []
        self.memory_idle: list[float] = []  # Redis bytes per idle connection, from INFO used_memory
        self.full_list: dict[str, float] = {}  # bytes per connection with a full deliveries list, by part

    async def point(self, series: Series, x: float, w: Any, record: bool = False,
                    before_fixed: Callable[[], Awaitable[None]] | None = None) -> LoadResult:
        """Saturation then half of it, open loop (``before_fixed`` awaited in between); the open-loop
        result (for the streams' e2e)."""
        b = self.bench
        before = await b.applied()
        sat = await b.load(f"growth {series.name} {x:g}", b.ours(w, "saturate", duration_s=self.d))
        done_at = await b.settled(b.applied, before, sat, f"growth {series.name} {x:g} at saturation")
        b.counts_for_final_check(w, sat.accepted)
        rate = sat.accepted / (done_at - sat.start_at) if done_at else float("nan")
        half = max(10.0, rate / 2) if rate == rate else 10.0
        if before_fixed is not None:
            await before_fixed()
        before = await b.applied()
        fixed = await b.load(f"growth {series.name} {x:g} at {half:,.0f}/s",
                             b.ours(w, "rate", rate=half, duration_s=self.d, record=record))
        await b.settled(b.applied, before, fixed, f"growth {series.name} {x:g} at {half:,.0f}/s")
        b.counts_for_final_check(w, fixed.accepted)
        series.x.append(x)
        series.throughput.append(rate)
        series.p99_ms.append(fixed.p(99))
        return fixed

    async def run(self) -> None:
        from bench.harness import Workload

        b = self.bench
        for n in self.plan.grow_connections:
            say(f"growth: {n:,} connections")
            per = await b.seed(n)
            if per == per:
                self.memory_x.append(n)
                self.memory_idle.append(per)
            await self.point(self.connections, n, Workload(f"c{n}", n, self.plan.body_bytes, seeded=True))
        for size in self.plan.grow_bodies:
            say(f"growth: {size // KIB} KiB bodies")
            await self.point(self.bodies, size / KIB, Workload(f"b{size}", self.plan.connections, size))
        for streams in self.plan.grow_streams:
            say(f"growth: {streams:,} open streams")
            await b.seed(streams)
            await self.streams_point(streams, Workload(f"s{streams}", streams, self.plan.body_bytes, seeded=True))
        say(f"growth: memory with a full deliveries list ({self.plan.full_list_connections} connections)")
        await self.full_lists()
        # A full run draws the plots docs/PERFORMANCE.md shows; a quick one keeps them out of docs/.
        folder = os.environ.get("BENCH_PLOT_DIR") or os.path.join(ROOT, "build" if self.plan.quick else "docs", "perf")
        self.plots = draw([("connections", self.connections), ("body-size", self.bodies), ("streams", self.streams)],
                          self.memory_x, self.memory_idle, sum(self.full_list.values()), folder,
                          f"{'BENCH_QUICK=1 ' if self.plan.quick else ''}make bench, "
                          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs shared by all")

    async def streams_point(self, n: int, w: Any) -> None:
        """``n`` streams open (one per connection, on the connections that get the traffic)."""
        b, seeded = self.bench, self.bench.seeded
        ids = [seeded.cid(i) for i in range(n)]
        spec = {"host": "127.0.0.1", "port": b.system.ports["status_api"], "token": b.system.token,
                "paths": [f"/v1/connections/{cid}/stream" for cid in ids], "fanout": 0, "wait_s": 0, "record": True}
        path = os.path.join(b.tmp, f"streams-{n}.json")
        with open(path, "wb") as fh:
            fh.write(orjson.dumps(spec))
        proc = await asyncio.create_subprocess_exec(
            PY, "-m", "bench.sse_clients", path, cwd=ROOT, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, preexec_fn=die_with_parent, limit=2**28)
        assert proc.stdout is not None and proc.stdin is not None
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), 180)).decode().split()
            if int(line[2]):
                b.notes.append(f"growth: {line[2]} of {n} streams did not open")
            base: list[int] = []

            async def go() -> None:  # the versions the open-loop run starts from; record from now on
                assert proc.stdin is not None
                base.extend(await b.system.versions(ids))
                proc.stdin.write(b"go\n")
                await proc.stdin.drain()
                await asyncio.sleep(0.2)

            fixed = await self.point(self.streams, n, w, record=True, before_fixed=go)
            out, _ = await asyncio.wait_for(proc.communicate(f"{fixed.accepted}\n".encode()), 120)
            changes = orjson.loads(out.strip().splitlines()[-1])["changes"]
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if base:  # the p99 of this series is webhook -> status on its stream
            e2e = match_changes(fixed.records, base, ids, changes)
            self.streams.p99_ms[-1] = percentile(e2e, 99)
            if len(e2e) < fixed.accepted:
                b.notes.append(f"growth: with {n:,} streams, {fixed.accepted - len(e2e):,} of {fixed.accepted:,} "
                               "webhooks were not seen on their stream")

    async def full_lists(self) -> None:
        """``full_list_connections`` seeded connections get ``LIST_LENGTH`` deliveries each (through the
        queue and the verifier); then what one such connection holds in Redis, by part."""
        b, k, n = self.bench, self.bench.system.keys, self.plan.full_list_connections
        ids = [b.seeded.cid(i) for i in range(min(n, b.seeded.count))]
        sent: list[tuple[str, str, str]] = []
        topology = Topology(self.plan.prefix, f"{self.plan.prefix}.analytics")
        before = await b.applied()
        connection = await aio_pika.connect(self.plan.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(topology.exchange)
            todo = iter([(cid, i) for i in range(LIST_LENGTH) for cid in ids])

            async def worker() -> None:
                for cid, _ in todo:
                    msg = DeliveryMessage(new_id(), cid, "standard-webhooks", now_ms(), "verified",
                                          event_id=f"msg_{uuid.uuid4().hex}", event_type="invoice.paid")
                    sent.append((cid, msg.delivery_id, msg.event_id or ""))
                    await exchange.publish(aio_pika.Message(
                        msg.to_bytes(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        content_type="application/json", message_id=msg.delivery_id), ROUTING_KEY)

            await asyncio.gather(*(worker() for _ in range(64)))
        await b.wait_count(b.applied, before + len(sent), "growth: full deliveries lists")
        redis = b.system.redis
        parts: dict[str, list[str]] = {
            "connection hash": [k.conn(c) for c in ids], "deliveries list": [k.deliveries(c) for c in ids],
            "outbox": [k.outbox(c) for c in ids],
            DEDUPE: [key for c, d, e in sent for key in (k.seen_delivery(c, d), k.seen_event(c, e))],
        }
        for part, keys in parts.items():
            total = 0
            for i in range(0, len(keys), 5000):
                async with redis.pipeline(transaction=False) as pipe:
                    for key in keys[i:i + 5000]:
                        pipe.memory_usage(key, samples=0)
                    total += sum(int(x or 0) for x in await pipe.execute())
            self.full_list[part] = total / max(1, len(ids))

    def kept_bytes(self) -> tuple[float, float]:
        """Redis bytes per connection with a full deliveries list (dedupe keys not included), and the
        dedupe keys' bytes per delivery (kept for their TTL whatever the list holds)."""
        dedupe = self.full_list.get(DEDUPE, float("nan"))
        return sum(v for k, v in self.full_list.items() if k != DEDUPE), dedupe / LIST_LENGTH

    def tables(self) -> list[str]:
        out = []
        for s in (self.connections, self.bodies, self.streams):
            out.append(f"how cost grows with {s.name}: {s.verdict()}")
            out.append(f"  | {s.x_label} | whole path webhooks/s | {s.p99_label} |")
            for x, t, p in zip(s.x, s.throughput, s.p99_ms, strict=True):
                out.append(f"  | {x:,.0f} | {t:,.0f} | {p:.1f} |")
        mem_k = growth_exponent(self.memory_x, [m * x for m, x in zip(self.memory_idle, self.memory_x, strict=True)])
        verdict = "faster than linearly: a LIMIT" if mem_k > 1.1 else "linearly"
        out.append(f"Redis memory with connections: total ~ N^{mem_k:.2f} (grows {verdict})")
        out.append("  | connections | Redis bytes per idle connection (INFO used_memory, added / added) |")
        for x, m in zip(self.memory_x, self.memory_idle, strict=True):
            out.append(f"  | {x:,.0f} | {m:,.0f} |")
        if self.full_list:
            total = sum(self.full_list.values())
            parts = ", ".join(f"{k} {v:,.0f} B" for k, v in self.full_list.items())
            out.append(f"Redis bytes per connection with a full deliveries list ({LIST_LENGTH} deliveries): "
                       f"{total:,.0f} B ({parts})")
        return out
