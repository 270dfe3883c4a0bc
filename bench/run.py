"""`make bench`: our services and the limits of this box, measured in one run, printed as one table.

The harness always starts its own copy of the system (receiver, verifier, status API as separate
processes, as ``make run`` starts them) on free loopback ports with a fresh Redis key prefix and
RabbitMQ names (``bench-<hex>``), so it neither disturbs nor is disturbed by a running ``make run``,
and removes every key, queue and exchange it made, and every process it started, when it ends.

``BENCH_QUICK=1`` runs one short round of everything (for iteration); the full run takes the median
of ``BENCH_ROUNDS`` (3) rounds of ``BENCH_DURATION_S`` (5) seconds each.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import aio_pika
import aiohttp
import orjson
import redis.asyncio as aioredis

from bench.stats import median, percentile
from shared.config import DEFAULT_AMQP_URL, DEFAULT_REDIS_URL
from shared.keys import Keys
from shared.runner import die_with_parent

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
TOKEN = "bench-" + secrets.token_hex(16)
PER_ACCOUNT = 10  # connections per account, as a real product would have


# --- the plan --------------------------------------------------------------------------------------


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


@dataclass(frozen=True)
class Plan:
    quick: bool
    rounds: int
    duration_s: float
    rate: int
    concurrency: int
    load_procs: int
    connections: int
    verifier_messages: int
    sweep_pending: int
    sse_streams: int
    sse_fanout: int
    receiver_workers: int
    memory_connections: int
    amqp_url: str
    redis_url: str
    prefix: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}")

    @classmethod
    def from_env(cls) -> Plan:
        quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
        return cls(
            quick=quick,
            rounds=_env_int("BENCH_ROUNDS", 1 if quick else 3),
            duration_s=float(os.environ.get("BENCH_DURATION_S") or (2 if quick else 5)),
            rate=_env_int("BENCH_RATE", 1000),
            concurrency=_env_int("BENCH_CONCURRENCY", 64),
            load_procs=_env_int("BENCH_LOAD_PROCS", 2),
            connections=_env_int("BENCH_CONNECTIONS", 1000),
            verifier_messages=_env_int("BENCH_VERIFIER_MESSAGES", 5000 if quick else 20000),
            sweep_pending=_env_int("BENCH_SWEEP_PENDING", 1_000_000),
            sse_streams=_env_int("BENCH_SSE_STREAMS", 10_000),
            sse_fanout=_env_int("BENCH_SSE_FANOUT", 1000),
            # Two receiver processes (one per core) measured best here; the service's default is 1.
            receiver_workers=_env_int("RECEIVER_WORKERS", 2),
            memory_connections=_env_int("BENCH_MEMORY_CONNECTIONS", 1000),
            amqp_url=os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL,
            redis_url=os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- processes -----------------------------------------------------------------------------------


class Processes:
    """Every process the harness starts; all of them are stopped by ``stop_all``."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        log = open(os.path.join(self.log_dir, f"{name}.log"), "ab")  # noqa: SIM115 - owned by the child
        self.running[name] = subprocess.Popen(
            list(argv), cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=log,
            preexec_fn=die_with_parent,
        )
        log.close()

    def stop(self, name: str) -> None:
        proc = self.running.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)

    def pid(self, name: str) -> int:
        return self.running[name].pid


async def wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as resp:
                    if resp.status < 500:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout_s}s (logs are in the bench log folder)")


async def wait_port(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout_s}s")


# --- load ------------------------------------------------------------------------------------------


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

    @property
    def void(self) -> bool:
        return self.sent != self.accepted + self.refused

    @property
    def rate(self) -> float:
        return self.in_window / self.duration_s

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


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
    parts = [orjson.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    merged = LoadResult(0, 0, 0, 0, 0, {}, [], [], start_at, float(spec["duration_s"]))
    for part in parts:
        for key in ("sent", "accepted", "refused", "errors", "in_window"):
            setattr(merged, key, getattr(merged, key) + part[key])
        for status, n in part["statuses"].items():
            merged.statuses[status] = merged.statuses.get(status, 0) + n
        merged.latencies_ms.extend(part["latencies_ms"])
        merged.records.extend(tuple(r) for r in part["records"])
        merged.cpu_s += part["cpu_s"]
    return merged


# --- the results table ---------------------------------------------------------------------------


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


# --- the bench -----------------------------------------------------------------------------------


@dataclass
class Conn:
    id: str
    secret: str
    url: str


class Bench:
    def __init__(self, plan: Plan, tmp: str) -> None:
        self.plan = plan
        self.tmp = tmp
        self.token = TOKEN  # this module's: ``python -m`` runs it as __main__, a second import differs
        self.procs = Processes(tmp)
        self.keys = Keys(plan.prefix)
        self.ports = {name: free_port() for name in ("receiver", "status_api", "verifier")}
        self.api = f"http://127.0.0.1:{self.ports['status_api']}"
        self.receiver = f"http://127.0.0.1:{self.ports['receiver']}"
        self.conns: list[Conn] = []
        self.redis = aioredis.Redis.from_url(plan.redis_url, decode_responses=True)
        self.accepted_verified = 0  # webhooks answered 202: the verifier must count exactly these
        self.notes: list[str] = []
        self.void: list[str] = []
        self.limit_urls: dict[str, str] = {}
        self.limit_secret = ""
        self.first_round = True

    # -- the system under test --

    def service_env(self) -> dict[str, str]:
        p = self.plan.prefix
        return {
            "AMQP_URL": self.plan.amqp_url,
            "REDIS_URL": self.plan.redis_url,
            "REDIS_PREFIX": p,
            "AMQP_PREFIX": p,
            "ANALYTICS_EXCHANGE": f"{p}.analytics",
            "RECEIVER_PORT": str(self.ports["receiver"]),
            "STATUS_API_PORT": str(self.ports["status_api"]),
            "VERIFIER_PORT": str(self.ports["verifier"]),
            "STATUS_API_TOKEN": TOKEN,
            "PUBLIC_BASE_URL": self.receiver,
            "RECEIVER_WORKERS": str(self.plan.receiver_workers),
        }

    def start_service(self, name: str) -> None:
        self.procs.start(name, [PY, "-m", f"services.{name}"], self.service_env())

    async def start_system(self) -> None:
        for name in ("receiver", "status_api", "verifier"):
            self.start_service(name)
        for name in ("receiver", "status_api", "verifier"):
            await wait_http(f"http://127.0.0.1:{self.ports[name]}/readyz")

    async def create_connections(self, n: int, account: str | None = None) -> list[Conn]:
        """``n`` connections, in ``account`` or ``PER_ACCOUNT`` to an account (``acct-bench-<i>``)."""
        headers = {"Authorization": f"Bearer {TOKEN}"}
        accounts = iter(range(n))
        out: list[Conn] = []
        sem = asyncio.Semaphore(16)
        async with aiohttp.ClientSession(headers=headers) as session:

            async def one() -> None:
                acct = account or f"acct-bench-{next(accounts) // PER_ACCOUNT}"
                body = {"account_id": acct, "provider": "standard-webhooks", "timeout_s": 3600}
                async with sem, session.post(f"{self.api}/v1/connections", json=body) as resp:
                    data = await resp.json()
                    if resp.status != 201:
                        raise RuntimeError(f"could not create a connection: {resp.status} {data}")
                    out.append(Conn(data["id"], data["secret"], data["webhook_url"]))

            await asyncio.gather(*(one() for _ in range(n)))
        return out

    async def verifier_applied(self, session: aiohttp.ClientSession) -> int:
        """Deliveries the verifier has stored since it started (its own Prometheus counter)."""
        async with session.get(f"http://127.0.0.1:{self.ports['verifier']}/metrics") as resp:
            text = await resp.text()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("hookstatus_deliveries_consumed_total{") and 'result="applied"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    async def events_stored(self, conns: Sequence[Conn]) -> int:
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in conns:
                pipe.hget(self.keys.conn(c.id), "events_received")
            return sum(int(v or 0) for v in await pipe.execute())

    async def versions(self, conns: Sequence[Conn]) -> list[int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in conns:
                pipe.hget(self.keys.conn(c.id), "version")
            return [int(v or 0) for v in await pipe.execute()]

    def hook_spec(self, mode: str, urls: Sequence[str], secrets_: Sequence[str], **kw: Any) -> dict[str, Any]:
        per_proc = int(6000 * self.plan.duration_s / self.plan.load_procs) if mode == "saturate" else \
            int(self.plan.rate * self.plan.duration_s / self.plan.load_procs) + 1
        spec: dict[str, Any] = {
            "mode": mode, "kind": "webhook", "duration_s": self.plan.duration_s,
            "targets": [{"url": u, "secret": s} for u, s in zip(urls, secrets_, strict=True)],
            "concurrency": max(1, self.plan.concurrency // self.plan.load_procs),
            "rate": self.plan.rate, "presign": per_proc,
        }
        spec.update(kw)
        return spec

    def get_spec(self, mode: str, urls: Sequence[str], headers: dict[str, str]) -> dict[str, Any]:
        return {
            "mode": mode, "kind": "get", "duration_s": self.plan.duration_s, "headers": headers,
            "targets": [{"url": u} for u in urls], "rate": self.plan.rate,
            "concurrency": max(1, self.plan.concurrency // self.plan.load_procs),
        }

    def check(self, what: str, result: LoadResult) -> LoadResult:
        if result.void:
            self.void.append(f"{what}: sent {result.sent} != accepted {result.accepted} + refused "
                             f"{result.refused} ({result.statuses})")
        elif result.refused:
            self.notes.append(f"{what}: {result.refused} refused ({result.statuses})")
        return result

    async def load(self, what: str, spec: dict[str, Any]) -> LoadResult:
        return self.check(what, await run_load(spec, self.plan.load_procs, self.tmp))

    # -- limits --

    def start_limit(self, name: str, port: int, *extra: str, workers: int = 1) -> None:
        self.procs.start(name, [PY, "-m", "bench.limits", name, "--port", str(port), "--workers", str(workers),
                                "--amqp-url", self.plan.amqp_url, "--redis-url", self.plan.redis_url,
                                "--prefix", self.plan.prefix, *extra])

    async def start_limits(self) -> None:
        """Start the limit servers once; they idle while ours run (so rounds can alternate)."""
        workers = self.plan.receiver_workers
        self.limit_secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        servers = {
            "bare": ((), workers),
            "minimal-receiver": (("--secret", self.limit_secret, "--queue", f"{self.plan.prefix}.limit.receiver"),
                                 workers),
            "json-redis": ((), 1),  # like the status API: one process
        }
        for name, (extra, n) in servers.items():
            port = free_port()
            self.start_limit(name, port, *extra, workers=n)
            self.limit_urls[name] = f"http://127.0.0.1:{port}"
        for url in self.limit_urls.values():
            await wait_port(int(url.rsplit(":", 1)[1]))
        await asyncio.sleep(0.5 * workers)

    async def limit_load(self, name: str, mode: str) -> LoadResult:
        base, ids = self.limit_urls[name], [c.id for c in self.conns]
        if name == "json-redis":
            spec = self.get_spec(mode, [f"{base}/v1/connections/{i}" for i in ids], {})
        else:
            keys = [self.limit_secret] * len(ids) if name == "minimal-receiver" else [c.secret for c in self.conns]
            spec = self.hook_spec(mode, [f"{base}/hooks/{i}" for i in ids], keys)
        result = await self.load(f"limit {name} {mode}", spec)
        if name == "minimal-receiver":
            await self.purge_queue(f"{self.plan.prefix}.limit.receiver")
        return result

    async def loop_limit(self, name: str, queue: str, count: int) -> float:
        out = subprocess.run(
            [PY, "-m", "bench.limits", name, "--amqp-url", self.plan.amqp_url, "--redis-url", self.plan.redis_url,
             "--prefix", self.plan.prefix, "--queue", queue, "--count", str(count),
             "--concurrency", str(self.plan.concurrency)],
            cwd=ROOT, capture_output=True, timeout=300, preexec_fn=die_with_parent, check=True,
        )
        return float(orjson.loads(out.stdout.strip().splitlines()[-1])["rate"])

    def redis_benchmark(self) -> tuple[float, float]:
        from urllib.parse import urlsplit

        parts = urlsplit(self.plan.redis_url)
        out = subprocess.run(
            ["redis-benchmark", "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379), "-t", "get",
             "-n", str(20000 if self.plan.quick else 100000), "-c", str(self.plan.concurrency), "--csv"],
            capture_output=True, text=True, timeout=120, check=True,
        )
        line = [ln for ln in out.stdout.splitlines() if ln.startswith('"GET"')][0]
        cells = [c.strip('"') for c in line.split(",")]
        return float(cells[1]), float(cells[6])

    async def purge_queue(self, queue: str) -> None:
        connection = await aio_pika.connect(self.plan.amqp_url)
        async with connection:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await (await channel.get_queue(queue)).purge()

    async def delete_queue(self, queue: str) -> None:
        connection = await aio_pika.connect(self.plan.amqp_url)
        async with connection:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(queue)

    # -- our services --

    async def receiver_saturation(self) -> list[LoadResult]:
        """The receiver alone at saturation, as its limit was measured: the verifier is stopped, so the
        deliveries wait in the queue (it stores them afterwards, and they are counted then)."""
        urls, keys = [c.url for c in self.conns], [c.secret for c in self.conns]
        self.procs.stop("verifier")
        sats = [await self.load("receiver saturation", self.hook_spec("saturate", urls, keys))]
        self.accepted_verified += sum(r.accepted for r in sats)
        self.start_service("verifier")
        async with aiohttp.ClientSession() as session:
            await wait_http(f"http://127.0.0.1:{self.ports['verifier']}/readyz")
            await self.wait_applied(session, sum(r.accepted for r in sats))
        return sats

    async def whole_path(self) -> list[float]:
        """Everything running, the receiver saturated: webhooks accepted / time until all are stored."""
        whole = []
        urls, keys = [c.url for c in self.conns], [c.secret for c in self.conns]
        groups = self.cpu_groups()
        async with aiohttp.ClientSession() as session:
            before = await self.verifier_applied(session)
            cpu_before, wall_before = cpu_seconds(groups), time.monotonic()
            result = await self.load("whole path", self.hook_spec("saturate", urls, keys))
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

    def cpu_groups(self) -> dict[str, list[int]]:
        """The processes whose CPU time the whole-path row accounts for (the servers by their name)."""
        receiver = self.procs.pid("receiver")
        groups = {"receiver": [receiver, *children(receiver)], "verifier": [self.procs.pid("verifier")],
                  "status API": [self.procs.pid("status_api")], "RabbitMQ": [], "Redis": []}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError), open(f"/proc/{entry}/comm") as fh:
                    comm = fh.read().strip()
                if comm == "beam.smp":
                    groups["RabbitMQ"].append(int(entry))
                elif comm == "redis-server":
                    groups["Redis"].append(int(entry))
        return groups

    async def wait_applied(self, session: aiohttp.ClientSession, target: int, timeout_s: float = 120) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await self.verifier_applied(session) >= target:
                return time.time()
            await asyncio.sleep(0.05)
        self.void.append(f"the verifier did not store {target} deliveries within {timeout_s}s")
        return 0.0

    async def fixed_rate_and_e2e(self, use_sse: bool) -> tuple[list[LoadResult], list[list[float]]]:
        fixed, e2e = [], []
        urls, keys = [c.url for c in self.conns], [c.secret for c in self.conns]
        async with aiohttp.ClientSession() as session:
            base = await self.versions(self.conns)
            before = await self.verifier_applied(session)
            listener = await self.start_listener(use_sse)
            groups = {**self.cpu_groups(), "change listener": [listener.pid]}
            cpu_before = cpu_seconds(groups)
            result = await self.load(f"receiver at {self.plan.rate}/s",
                                     self.hook_spec("rate", urls, keys, record=True))
            self.accepted_verified += result.accepted
            done_at = await self.wait_applied(session, before + result.accepted)
            if self.first_round and done_at:
                used = {k: v - cpu_before[k] for k, v in cpu_seconds(groups).items()}
                used["load generator"] = result.cpu_s
                self.notes.append(f"at {self.plan.rate}/s, CPU per webhook: " + cpu_note(used, result.accepted))
            await asyncio.sleep(0.3)
            changes = await self.stop_listener(listener)
            fixed.append(result)
            e2e.append(match_changes(result.records, base, [c.id for c in self.conns], changes))
        return fixed, e2e

    async def start_listener(self, use_sse: bool) -> asyncio.subprocess.Process:
        if use_sse:
            accounts = range((len(self.conns) + PER_ACCOUNT - 1) // PER_ACCOUNT)
            args = ["sse", ",".join(f"{self.api}/v1/accounts/acct-bench-{i}/stream" for i in accounts), self.token]
        else:
            args = ["pubsub", self.plan.redis_url, self.keys.changes]
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
            self.procs.stop("verifier")
            await self.queue_deliveries(n)
            self.start_service("verifier")
            await wait_http(f"http://127.0.0.1:{self.ports['verifier']}/readyz")
            first, first_at = 0, 0.0
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                done = await self.verifier_applied(session)
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

    async def queue_deliveries(self, n: int) -> None:
        from shared.broker import ROUTING_KEY, Topology
        from shared.models import DeliveryMessage, new_id, now_ms

        topology = Topology(self.plan.prefix, f"{self.plan.prefix}.analytics")
        connection = await aio_pika.connect(self.plan.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(topology.exchange)
            todo = iter(range(n))

            async def worker() -> None:
                for i in todo:
                    c = self.conns[i % len(self.conns)]
                    msg = DeliveryMessage(new_id(), c.id, "standard-webhooks", now_ms(), "verified",
                                          event_id=f"msg_{uuid.uuid4().hex}", event_type="invoice.paid")
                    await exchange.publish(aio_pika.Message(
                        msg.to_bytes(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        content_type="application/json", message_id=msg.delivery_id), ROUTING_KEY)

            await asyncio.gather(*(worker() for _ in range(64)))

    async def status_api(self) -> tuple[list[LoadResult], list[LoadResult]]:
        urls = [f"{self.api}/v1/connections/{c.id}" for c in self.conns]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        sat = [await self.load("status API saturation", self.get_spec("saturate", urls, headers))]
        fixed = [await self.load(f"status API at {self.plan.rate}/s", self.get_spec("rate", urls, headers))]
        return sat, fixed

    # -- sweep and memory --

    async def sweep_cost(self) -> dict[int, float]:
        """Median tick time with ``few`` due connections among N pending, for a small and a large N.
        Two separate pending indexes; ticks alternate between them, so both see the same box."""
        from services.verifier.sweeper import sweep_once
        from shared.store import Store

        client = aioredis.Redis.from_url(self.plan.redis_url, decode_responses=True)
        sizes = sorted({1000, self.plan.sweep_pending})
        stores = {size: Store(client, f"{self.plan.prefix}:sw{size}") for size in sizes}
        samples: dict[int, list[float]] = {size: [] for size in sizes}
        few, ticks = 10, 5 if self.plan.quick else 15
        far = int(time.time() * 1000) + 86_400_000
        try:
            for size, store in stores.items():
                await fill_pending(store, size, far, 0)
                await add_due(store, few)
                await sweep_once(store, 500)  # warm-up: scripts loaded, connections open
            for _ in range(ticks):
                for size, store in stores.items():
                    await add_due(store, few)
                    started = time.perf_counter()
                    failed = await sweep_once(store, 500)
                    samples[size].append((time.perf_counter() - started) * 1000)
                    if failed != few:
                        self.void.append(f"sweep: a tick failed {failed} connections, expected {few}")
        finally:
            await delete_prefix(client, f"{self.plan.prefix}:sw")
            await client.aclose()
        return {size: median(values) for size, values in samples.items()}

    async def memory_per_connection(self) -> float:
        conns = await self.create_connections(self.plan.memory_connections, "acct-bench-memory")
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in conns:
                pipe.memory_usage(k.conn(c.id), samples=0)
            per_hash = await pipe.execute()
        pending_bytes = int(await self.redis.memory_usage(k.pending, samples=0) or 0)
        pending = pending_bytes / max(1, await self.redis.zcard(k.pending))
        account_key = k.account("acct-bench-memory")
        account = int(await self.redis.memory_usage(account_key, samples=0) or 0) / len(conns)
        return sum(int(x or 0) for x in per_hash) / len(conns) + pending + account

    # -- the whole run --

    async def run(self) -> list[Row]:
        say(f"starting the system (prefix {self.plan.prefix}, receiver workers {self.plan.receiver_workers})")
        await self.start_system()
        self.conns = await self.create_connections(self.plan.connections)
        use_sse = await self.sse_available()
        await self.start_limits()
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
            lim["bare"].append(await self.limit_load("bare", "saturate"))
            lim["minimal"].append(await self.limit_load("minimal-receiver", "saturate"))
            sat += await self.receiver_saturation()
            say(f"round {n + 1}: at {self.plan.rate}/s (minimal receiver; ours, end to end via {via})")
            lim["minimal_rate"].append(await self.limit_load("minimal-receiver", "rate"))
            f, e = await self.fixed_rate_and_e2e(use_sse)
            fixed += f
            e2e += e
            say(f"round {n + 1}: whole path (raw confirmed publish; ours)")
            lim["publish"].append(await self.loop_limit("publish-loop", queue, count))
            whole += await self.whole_path()
            say(f"round {n + 1}: verifier (consume + HINCRBY + ack; ours)")
            lim["consume"].append(await self.loop_limit("consume-loop", queue, count))
            verifier += await self.verifier_rate()
            say(f"round {n + 1}: status API (redis-benchmark GET, bare JSON from Redis, ours)")
            lim["redis_get"].append(self.redis_benchmark())
            lim["json"].append(await self.limit_load("json-redis", "saturate"))
            lim["json_rate"].append(await self.limit_load("json-redis", "rate"))
            s_, f_ = await self.status_api()
            api_sat += s_
            api_fixed += f_
            self.first_round = False
        for name in self.limit_urls:
            self.procs.stop(name)
        say("ours: SSE streams")
        sse = None
        try:
            sse = await asyncio.wait_for(self.sse_rows(), 240) if use_sse else None
        except (TimeoutError, RuntimeError, OSError) as exc:
            self.notes.append(f"SSE: the measurement failed ({type(exc).__name__}: {exc})")
        say(f"ours: timeout sweep with {self.plan.sweep_pending:,} pending")
        sweep = await self.sweep_cost()
        say("ours: Redis memory per idle connection")
        memory = await self.memory_per_connection()
        stored = await self.events_stored(self.conns)
        if stored != self.accepted_verified:
            self.void.append(f"double or lost counting: {self.accepted_verified} accepted, {stored} stored")
        else:
            self.notes.append(f"counting: {stored:,} webhooks accepted, {stored:,} counted by the verifier "
                              "(none lost, none twice)")
        return build_rows(self.plan, lim, sat, whole, fixed, e2e, use_sse, verifier, api_sat, api_fixed, sse,
                          sweep, memory)

    async def sse_available(self) -> bool:
        url = f"{self.api}/v1/accounts/acct-bench-0/stream"
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                async with session.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                    return resp.status == 200 and resp.content_type == "text/event-stream"
            except (aiohttp.ClientError, TimeoutError):
                return False

    async def send_one(self, conn: Conn) -> None:
        from standardwebhooks import Webhook

        from bench.loadgen import sign

        req = sign({"url": conn.url}, 0, Webhook(conn.secret))
        async with aiohttp.ClientSession() as session, session.post(req.url, data=req.body,
                                                                    headers=req.headers) as resp:
            if resp.status != 202:
                raise RuntimeError(f"a webhook was refused: {resp.status} {await resp.text()}")
        self.accepted_verified += 1

    async def sse_rows(self) -> dict[str, float] | None:
        from bench.sse_clients import measure_sse

        return await measure_sse(self, self.plan.sse_streams)

    async def cleanup(self) -> None:
        self.procs.stop_all()
        await delete_prefix(self.redis, f"{self.plan.prefix}:")
        connection = await aio_pika.connect(self.plan.amqp_url)
        async with connection:
            p = self.plan.prefix
            for queue in (f"{p}.deliveries", f"{p}.deliveries.dead", f"{p}.limit", f"{p}.limit.receiver"):
                channel = await connection.channel()
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.queue_delete(queue)
            for exchange in (f"{p}.deliveries", f"{p}.dead", f"{p}.analytics"):
                channel = await connection.channel()
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.exchange_delete(exchange)
        await self.redis.aclose()


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
        from bisect import bisect_left

        for k, scheduled in enumerate(sorted(sends), start=1):
            i = bisect_left(versions, base[target] + k)
            if i < len(earliest):
                latencies.append((earliest[i][1] - scheduled) * 1000)
    return latencies


def children(pid: int) -> list[int]:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [int(p) for p in fh.read().split()]
    return []


def cpu_note(used: dict[str, float], webhooks: int) -> str:
    per = {k: v / max(1, webhooks) * 1e6 for k, v in used.items()}
    parts = ", ".join(f"{k} {v:.0f} µs" for k, v in sorted(per.items(), key=lambda x: -x[1]))
    return f"{sum(per.values()):.0f} µs in all ({parts})"


def cpu_seconds(groups: dict[str, list[int]]) -> dict[str, float]:
    """User + system CPU seconds used so far by each group of processes (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pids in groups.items():
        total = 0.0
        for pid in pids:
            with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
        out[name] = total
    return out


async def fill_pending(store: Any, n: int, deadline_ms: int, start: int) -> int:
    chunk = 5000
    for offset in range(0, n, chunk):
        async with store.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(store.keys.pending, {f"idle{start + offset + i:08d}": deadline_ms
                                           for i in range(min(chunk, n - offset))})
            await pipe.execute()
    return start + n


async def add_due(store: Any, few: int) -> None:
    past = int(time.time() * 1000) - 1000
    async with store.redis.pipeline(transaction=False) as pipe:
        for _ in range(few):
            cid = uuid.uuid4().hex
            pipe.hset(store.keys.conn(cid), mapping={"id": cid, "account_id": "acct-sweep", "state": "pending",
                                                     "pending_deadline": past, "seen": "{}", "version": 1})
            pipe.zadd(store.keys.pending, {cid: past})
        await pipe.execute()


async def delete_prefix(client: aioredis.Redis, prefix: str) -> None:
    batch: list[str] = []
    async for key in client.scan_iter(match=f"{prefix}*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            await client.unlink(*batch)
            batch.clear()
    if batch:
        await client.unlink(*batch)


# --- rows --------------------------------------------------------------------------------------


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


# --- the machine -------------------------------------------------------------------------------


async def machine(plan: Plan) -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    redis_version = (await aioredis.Redis.from_url(plan.redis_url).info("server"))["redis_version"]
    connection = await aio_pika.connect(plan.amqp_url)
    async with connection:
        props = connection.transport.connection.server_properties
        rabbit = props.get("version", b"?")
    rabbit = rabbit.decode() if isinstance(rabbit, bytes) else str(rabbit)
    libs = ", ".join(f"{name} {metadata.version(name)}" for name in ("aiohttp", "aio-pika", "redis", "uvloop"))
    return [
        f"machine: {os.cpu_count()} CPUs ({cpu}), {mem_gib:.1f} GiB RAM, {platform.system()} {platform.release()}",
        f"software: Python {platform.python_version()}, RabbitMQ {rabbit}, Redis {redis_version}, {libs}",
        f"run: {'BENCH_QUICK ' if plan.quick else ''}{plan.rounds} round(s) of {plan.duration_s:g} s, "
        f"median shown; load from {plan.load_procs} generator processes, {plan.concurrency} in flight at "
        f"saturation; {plan.connections} connections; RECEIVER_WORKERS={plan.receiver_workers}; everything "
        "(RabbitMQ, Redis, services, load) on this one box",
    ]


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


async def amain() -> int:
    plan = Plan.from_env()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hookstatus-bench-") as tmp:
        bench = Bench(plan, tmp)
        try:
            rows = await bench.run()
        except BaseException:
            say(f"failed; service logs were in {tmp}:")
            for name in sorted(os.listdir(tmp)):
                if name.endswith(".log"):
                    with open(os.path.join(tmp, name), "rb") as fh:
                        tail = fh.read()[-1500:].decode(errors="replace")
                    print(f"--- {name}\n{tail}", file=sys.stderr)
            raise
        finally:
            await bench.cleanup()
            keep = os.environ.get("BENCH_LOG_DIR")
            if keep:  # the services' own logs, for a look after the run
                import shutil

                shutil.copytree(tmp, keep, dirs_exist_ok=True)
    print("\n".join(await machine(plan)))
    print()
    print(render(rows))
    print()
    for note in bench.notes:
        print(f"note: {note}")
    for void in bench.void:
        print(f"VOID: {void}")
    print(f"(bench took {time.monotonic() - started:.0f} s)")
    return 1 if bench.void else 0


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    from bench.loadgen import run_loop

    sys.exit(run_loop(amain()))


if __name__ == "__main__":
    main()
