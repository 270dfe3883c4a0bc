"""The status API's SSE streams alone, at a fixed rate of changes: ``python -m bench.streams``.

Starts the real status API (``services.status_api``, one process) on a free port and a fresh prefix,
stores ``--connections`` connected connections straight in Redis (10 to an account, secrets sealed as
the API seals them), and opens one account stream per account in a process of its own
(``bench.sse_clients``, which notes every event each stream receives). Then it changes connections at
``--rate`` changes per second the way the verifier does for an event counted: one Lua script bumps the
hash's ``version`` and ``events_received`` and publishes the same note as ``apply_delivery.lua`` on the
quiet changes channel. Each round it reads the status API's CPU (user + system, ``/proc``) over the
round and divides it by the changes made in it; the delivery latency is each change's arrival on its
stream minus the moment it was published (one clock: the same box).

It prints, per round, the CPU per change and the delivery latency (p50, p99, max), then their medians,
and how many changes never reached their stream (none should). Profile meanwhile with
``py-spy record --pid <status API pid> --duration 3 --rate 200 --format raw`` (the pid is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.plan import PER_ACCOUNT, PY, ROOT, Plan
from bench.processes import cpu_seconds, say, wait_http
from bench.reads import store_records
from bench.stats import median
from bench.system import System
from shared.models import now_ms
from shared.records import ConnectionRecord
from shared.runner import die_with_parent

TICK_S = 0.005  # the producer's pacing step: each step publishes what the rate owes by then

# An event counted on a connected connection, as apply_delivery.lua stores and announces it.
COUNTED = """
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HINCRBY', KEYS[1], 'events_received', 1)
redis.call('HSET', KEYS[1], 'last_event_at', ARGV[2], 'updated_at', ARGV[2], 'rejected_since_event', 0)
local id = redis.call('HGET', KEYS[1], 'id')
local account = redis.call('HGET', KEYS[1], 'account_id')
redis.call('PUBLISH', ARGV[1], cjson.encode({id = id, account_id = account, version = version, state = 'connected'}))
return version
"""


@dataclass
class Round:
    changes: int
    cpu_s: float
    wall_s: float

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / max(1, self.changes) * 1e6


@dataclass
class Run:
    rounds: list[Round] = field(default_factory=list)
    sent: dict[tuple[str, int], float] = field(default_factory=dict)  # (id, version) -> published at
    round_of: dict[tuple[str, int], int] = field(default_factory=dict)


async def seed(system: System, n: int) -> list[str]:
    """``n`` connected connections (10 to an account, ``acct-bench-streams-<i>``); their ids."""

    def connected(cid: str, account: str, now: int) -> ConnectionRecord:
        return ConnectionRecord(
            id=cid, account_id=account, provider="standard-webhooks", state="connected",
            reason="verified_event", webhook_url=f"{system.receiver}/hooks/{cid}", version=2,
            secret="whsec_" + cid, timeout_s=3600, created_at_ms=now, updated_at_ms=now,
            connected_at_ms=now, last_event_at_ms=now, events_received=1, last_verified_slot="current")

    return await store_records(system, n, "acct-bench-streams", connected)


class Streams:
    def __init__(self, plan: Plan, tmp: str, args: argparse.Namespace) -> None:
        self.plan = plan
        self.tmp = tmp
        self.args = args
        self.system = System(plan, tmp)
        self.ids: list[str] = []
        self.run = Run()
        self.pid = 0
        self.clients: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        say(f"starting the status API (prefix {self.plan.prefix})")
        self.system.start_service("status_api")
        await wait_http(f"{self.system.api}/readyz")
        self.pid = self.system.procs.pid("status_api")
        self.ids = await seed(self.system, self.args.connections)
        accounts = sorted({i // PER_ACCOUNT for i in range(len(self.ids))})
        paths = [f"/v1/accounts/acct-bench-streams-{a}/stream" for a in accounts]
        spec = {"host": "127.0.0.1", "port": self.system.ports["status_api"], "paths": paths,
                "token": self.system.token, "record": True, "settle_s": 20}
        path = os.path.join(self.tmp, "streams.json")
        with open(path, "wb") as fh:
            fh.write(orjson.dumps(spec))
        self.clients = await asyncio.create_subprocess_exec(
            PY, "-m", "bench.sse_clients", path, cwd=ROOT, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, preexec_fn=die_with_parent, limit=2**28)
        assert self.clients.stdout is not None and self.clients.stdin is not None
        line = (await self.clients.stdout.readline()).decode().split()
        say(f"{line[1]} account streams open ({line[2]} failed), status API pid {self.pid}")
        self.clients.stdin.write(b"go\n")
        await self.clients.stdin.drain()
        await asyncio.sleep(0.5)  # the clients mark where they start recording

    async def produce(self, duration_s: float, round_no: int) -> int:
        """Changes at the planned rate for ``duration_s``; how many were made."""
        sha = await self.system.redis.script_load(COUNTED)
        quiet = self.system.keys.changes_quiet
        pick = random.Random(round_no).choice
        made, start = 0, time.monotonic()
        while (elapsed := time.monotonic() - start) < duration_s:
            owed = int(elapsed * self.args.rate) - made
            if owed > 0:
                chosen = [pick(self.ids) for _ in range(owed)]
                at = time.time()
                async with self.system.redis.pipeline(transaction=False) as pipe:
                    for cid in chosen:
                        pipe.evalsha(sha, 1, self.system.keys.conn(cid), quiet, str(now_ms()))
                    versions = await pipe.execute()
                for cid, version in zip(chosen, versions, strict=True):
                    self.run.sent[(cid, int(version))] = at
                    self.run.round_of[(cid, int(version))] = round_no
                made += owed
            await asyncio.sleep(TICK_S)
        return made

    async def measure(self, round_no: int, duration_s: float) -> None:
        before, t0 = cpu_seconds({"api": [self.pid]})["api"], time.monotonic()
        made = await self.produce(duration_s, round_no)
        await asyncio.sleep(0.2)  # what was published last is delivered within the round's CPU
        used, wall = cpu_seconds({"api": [self.pid]})["api"] - before, time.monotonic() - t0
        if round_no >= 0:
            self.run.rounds.append(Round(made, used, wall))
            say(f"  round {round_no + 1}: {made:,} changes in {wall:.1f} s, status API CPU "
                f"{self.run.rounds[-1].cpu_us:.0f} µs/change ({used / wall * 100:.0f} % of a core)")

    async def collect(self) -> list[list[Any]]:
        assert self.clients is not None and self.clients.stdin is not None
        out, _ = await self.clients.communicate(f"{len(self.run.sent)}\n".encode())
        return list(orjson.loads(out.strip().splitlines()[-1])["changes"])

    async def go(self) -> str:
        await self.start()
        say(f"warming up: {self.args.rate:,}/s for 2 s")
        await self.measure(-1, 2.0)
        for n in range(self.args.rounds):
            await self.measure(n, self.args.duration)
        return self.report(await self.collect())

    def report(self, changes: list[list[Any]]) -> str:
        latency: dict[int, list[float]] = {}
        seen, repeated = set(), 0
        for cid, version, arrival in changes:
            key = (str(cid), int(version))
            if key not in self.run.sent:
                continue  # the tail of a stream's snapshot
            if key in seen:
                repeated += 1
                continue
            seen.add(key)
            latency.setdefault(self.run.round_of[key], []).append((arrival - self.run.sent[key]) * 1000)
        lines = [f"status API streams: {len(self.ids):,} connections, {len(self.ids) // PER_ACCOUNT} account "
                 f"streams, {self.args.rate:,} changes/s, {self.args.rounds} round(s) of {self.args.duration:g} s"]
        cpus, p50s, p99s = [], [], []
        for n, r in enumerate(self.run.rounds):
            ms = sorted(latency.get(n, [])) or [float("nan")]
            p50, p99 = ms[len(ms) // 2], ms[min(len(ms) - 1, int(len(ms) * 0.99))]
            cpus.append(r.cpu_us)
            p50s.append(p50)
            p99s.append(p99)
            lines.append(f"  round {n + 1}: CPU {r.cpu_us:5.0f} µs/change   latency p50 {p50:6.1f} ms  "
                         f"p99 {p99:6.1f} ms  max {ms[-1]:6.1f} ms")
        lines.append(f"median: CPU {median(cpus):.0f} µs/change (range {min(cpus):.0f}-{max(cpus):.0f}), "
                     f"latency p50 {median(p50s):.1f} ms, p99 {median(p99s):.1f} ms")
        # A change read after the next one of its connection was stored is shown at the newer version
        # (a stream sends a connection as it is when it sends it): superseded, not lost.
        newest: dict[str, int] = {}
        for cid, version in seen:
            newest[cid] = max(version, newest.get(cid, 0))
        unseen = [key for key in self.run.sent if key not in seen]
        lost = [key for key in unseen if newest.get(key[0], 0) <= key[1]]
        lines.append(f"changes shown only at a newer version: {len(unseen) - len(lost)}; never shown: {len(lost)}; "
                     f"shown twice: {repeated}")
        return "\n".join(lines)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=1500, help="changes per second")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    plan = Plan.from_env()
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp:
        streams = Streams(plan, tmp, args)
        try:
            report = await streams.go()
        finally:
            if streams.clients is not None and streams.clients.returncode is None:
                streams.clients.kill()
                await streams.clients.wait()
            await streams.system.cleanup()
        print(report)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
