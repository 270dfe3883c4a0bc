"""The load generator: one process of it, driven by a JSON spec, printing one JSON result.

Two modes:

- ``saturate``: ``concurrency`` requests always in flight (closed loop) for ``duration_s``; the
  answers that complete inside the window count towards the rate.
- ``rate``: open loop at a fixed ``rate``. Request ``i`` is *scheduled* at ``start + i / rate`` and
  its latency is measured from that scheduled time, not from when it actually left: a generator that
  falls behind shows up as latency instead of hiding it (no coordinated omission).

Webhooks are signed with the ``standardwebhooks`` package (the provider's own SDK), each with a new
``webhook-id``, before the clock starts, so signing never slows the load down. Every request is
answered or counted as an error: the harness voids a run where sent != accepted + refused.

Usage: ``python -m bench.loadgen SPEC.json``. It prints ``ready`` once its requests are signed, reads
the common start time (Unix seconds) from stdin, and prints its JSON result on the last line.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from standardwebhooks import Webhook

ACCEPTED = {200, 202}


def run_loop(coro: Any) -> Any:
    """Run on uvloop, as the services do."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not on Windows
        return asyncio.run(coro)
    return uvloop.run(coro)


@dataclass(slots=True)
class Prepared:
    url: str
    body: bytes | None
    headers: dict[str, str]
    target: int


@dataclass(slots=True)
class Tally:
    sent: int = 0
    accepted: int = 0
    refused: int = 0
    errors: int = 0
    in_window: int = 0
    retry_after: int = 0  # refusals (429, 503) that said when to come back
    statuses: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    accepted_ms: list[float] = field(default_factory=list)  # the accepted ones' latencies alone
    records: list[tuple[int, float, int]] = field(default_factory=list)  # target, scheduled wall, status


PRESIGN_BYTES = 256 * 2**20  # bodies signed ahead per process at most; past that, signed on demand
SPREAD = 7919  # seeded targets are visited n * SPREAD mod count: spread over all, none twice in a cycle


def event_body(seq: int, size: int = 0) -> bytes:
    """A JSON event of ``size`` bytes (at least its fields' own length), with a pad field to fill it."""
    event = {"type": "invoice.paid", "id": f"evt_{seq}", "data": {"amount": 1200, "currency": "eur", "n": seq},
             "pad": ""}
    bare = orjson.dumps(event)
    if size > len(bare):
        event["pad"] = "x" * (size - len(bare))
        return orjson.dumps(event)
    return bare


def sign(target: dict[str, str], seq: int, hook: Webhook, size: int = 0) -> Prepared:
    body = event_body(seq, size)
    msg_id = f"msg_{uuid.uuid4().hex}"
    at = datetime.now(tz=UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": hook.sign(msg_id, at, body.decode()),
        "content-type": "application/json",
    }
    return Prepared(target["url"], body, headers, int(target.get("index", 0)))


def seeded_url(seeded: dict[str, Any], n: int) -> tuple[str, int]:
    """The URL of the n-th request to seeded connections (``stem`` + 16 hex digits of its number), and
    that number. Requests visit the connections ``SPREAD`` apart and alternate over ``bases``."""
    count = int(seeded["count"])
    step = SPREAD if math.gcd(SPREAD, count) == 1 else 1
    t = (n * step) % count
    bases = seeded["bases"]
    return f"{bases[n % len(bases)]}{seeded['stem']}{t:016x}{seeded.get('suffix', '')}", t


class Requests:
    """The i-th request of this process: pre-signed up to ``presign``, signed on demand after that.

    Targets are either listed (``targets``: url and secret each) or ``seeded``: ``count`` connections
    whose ids are a stem and a number, all with one secret (a million targets stay a small spec)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.kind = spec["kind"]
        self.seeded: dict[str, Any] | None = spec.get("seeded")
        self.targets: list[dict[str, str]] = spec.get("targets", [])
        for i, t in enumerate(self.targets):
            t.setdefault("index", str(i))
        self.headers: dict[str, str] = spec.get("headers", {})
        self.offset = int(spec.get("process_index", 0))
        self.stride = int(spec.get("processes", 1))
        self.size = int(spec.get("body_bytes", 0))
        self.hooks: list[Webhook] = []
        if self.kind == "webhook":
            secrets_ = [self.seeded["secret"]] if self.seeded else [t["secret"] for t in self.targets]
            self.hooks = [Webhook(x) for x in secrets_]
        presign = int(spec.get("presign", 0))
        if self.size:
            presign = min(presign, max(64, PRESIGN_BYTES // self.size))
        self.pool = [self._make(i) for i in range(presign)]

    def _make(self, i: int) -> Prepared:
        n = i * self.stride + self.offset
        if self.seeded is not None:
            url, t = seeded_url(self.seeded, n)
            target, hook = {"url": url, "index": str(t)}, self.hooks[0] if self.hooks else None
        else:
            t = n % len(self.targets)
            target, hook = self.targets[t], self.hooks[t] if self.hooks else None
        if hook is not None:
            return sign(target, n, hook, self.size)
        return Prepared(target["url"], None, self.headers, t)

    def get(self, i: int) -> Prepared:
        return self.pool[i] if i < len(self.pool) else self._make(i)


async def send(session: aiohttp.ClientSession, req: Prepared, tally: Tally) -> tuple[int, float]:
    """Send one request; its status (0 for no answer) and when its answer was read (perf_counter)."""
    tally.sent += 1
    try:
        if req.body is None:
            async with session.get(req.url, headers=req.headers) as resp:
                await resp.read()
        else:
            async with session.post(req.url, data=req.body, headers=req.headers) as resp:
                await resp.read()
        status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        tally.errors += 1
        key = type(exc).__name__
        tally.statuses[key] = tally.statuses.get(key, 0) + 1
        return 0, time.perf_counter()
    if status in ACCEPTED:
        tally.accepted += 1
    else:
        tally.refused += 1
        if "Retry-After" in resp.headers:
            tally.retry_after += 1
    tally.statuses[str(status)] = tally.statuses.get(str(status), 0) + 1
    return status, time.perf_counter()


async def saturate(spec: dict[str, Any], requests: Requests, session: aiohttp.ClientSession) -> Tally:
    tally = Tally()
    start = spec["start_at"]
    end = start + spec["duration_s"]
    counter = iter(range(10**9))
    await asyncio.sleep(max(0.0, start - time.time()))

    async def worker() -> None:
        while time.time() < end:
            req = requests.get(next(counter))
            t0 = time.perf_counter()
            status, done = await send(session, req, tally)
            if time.time() <= end and status:
                tally.in_window += 1
                tally.latencies_ms.append((done - t0) * 1000)
                if status in ACCEPTED:
                    tally.accepted_ms.append((done - t0) * 1000)

    await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
    return tally


async def fixed_rate(spec: dict[str, Any], requests: Requests, session: aiohttp.ClientSession) -> Tally:
    tally = Tally()
    rate, stride, offset = float(spec["rate"]), requests.stride, requests.offset
    total = int(rate * spec["duration_s"] / stride)
    wall_start = spec["start_at"]
    await asyncio.sleep(max(0.0, wall_start - time.time()))
    mono_start = time.perf_counter() - (time.time() - wall_start)
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int, scheduled: float) -> None:
        req = requests.get(i)
        status, done = await send(session, req, tally)
        if status:
            tally.latencies_ms.append((done - scheduled) * 1000)
            tally.in_window += 1
            if status in ACCEPTED:
                tally.accepted_ms.append((done - scheduled) * 1000)
        if spec.get("record"):
            tally.records.append((req.target, wall_start + (scheduled - mono_start), status))

    for i in range(total):
        scheduled = mono_start + (i * stride + offset) / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    return tally


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    requests = Requests(spec)
    limit = spec.get("concurrency", 0) if spec["mode"] == "saturate" else spec.get("max_connections", 512)
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=spec.get("timeout_s", 30))
    # Tell the harness we are signed and connected-ready; it answers with the common start time.
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    spec["start_at"] = float(await asyncio.to_thread(sys.stdin.readline))
    cpu_at_start = time.process_time()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        run = saturate if spec["mode"] == "saturate" else fixed_rate
        tally = await run(spec, requests, session)
    cpu_s = time.process_time() - cpu_at_start
    return {
        "sent": tally.sent,
        "accepted": tally.accepted,
        "refused": tally.refused,
        "errors": tally.errors,
        "in_window": tally.in_window,
        "statuses": tally.statuses,
        "latencies_ms": tally.latencies_ms,
        "accepted_ms": tally.accepted_ms,
        "retry_after": tally.retry_after,
        "records": tally.records,
        "cpu_s": cpu_s,
    }


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as fh:
        loaded = orjson.loads(fh.read())
    result = run_loop(main(loaded))
    # The result goes to a file beside the spec, and "done" to stdout once it is complete: a result of
    # hundreds of KiB sent down the pipe was at times cut short on the harness's side (its uvloop
    # subprocess transport closing with the process), which voided a run.
    with open(sys.argv[1] + ".result", "wb") as out:
        out.write(orjson.dumps(result))
    sys.stdout.write("done\n")
    sys.stdout.flush()
