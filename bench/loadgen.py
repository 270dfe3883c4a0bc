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
    statuses: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    records: list[tuple[int, float, int]] = field(default_factory=list)  # target, scheduled wall, status


def event_body(seq: int) -> bytes:
    return orjson.dumps(
        {"type": "invoice.paid", "id": f"evt_{seq}", "data": {"amount": 1200, "currency": "eur", "n": seq}}
    )


def sign(target: dict[str, str], seq: int, hook: Webhook) -> Prepared:
    body = event_body(seq)
    msg_id = f"msg_{uuid.uuid4().hex}"
    at = datetime.now(tz=UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": hook.sign(msg_id, at, body.decode()),
        "content-type": "application/json",
    }
    return Prepared(target["url"], body, headers, int(target.get("index", 0)))


class Requests:
    """The i-th request of this process: pre-signed up to ``presign``, signed on demand after that."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.kind = spec["kind"]
        self.targets: list[dict[str, str]] = spec["targets"]
        for i, t in enumerate(self.targets):
            t.setdefault("index", str(i))
        self.headers: dict[str, str] = spec.get("headers", {})
        self.offset = int(spec.get("process_index", 0))
        self.stride = int(spec.get("processes", 1))
        self.hooks = [Webhook(t["secret"]) for t in self.targets] if self.kind == "webhook" else []
        self.pool = [self._make(i) for i in range(int(spec.get("presign", 0)))]

    def _make(self, i: int) -> Prepared:
        n = i * self.stride + self.offset
        t = n % len(self.targets)
        if self.kind == "webhook":
            return sign(self.targets[t], n, self.hooks[t])
        return Prepared(self.targets[t]["url"], None, self.headers, t)

    def get(self, i: int) -> Prepared:
        return self.pool[i] if i < len(self.pool) else self._make(i)


async def send(session: aiohttp.ClientSession, req: Prepared, tally: Tally) -> int:
    tally.sent += 1
    try:
        if req.body is None:
            async with session.get(req.url, headers=req.headers) as resp:
                await resp.read()
                status = resp.status
        else:
            async with session.post(req.url, data=req.body, headers=req.headers) as resp:
                await resp.read()
                status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        tally.errors += 1
        key = type(exc).__name__
        tally.statuses[key] = tally.statuses.get(key, 0) + 1
        return 0
    if status in ACCEPTED:
        tally.accepted += 1
    else:
        tally.refused += 1
    tally.statuses[str(status)] = tally.statuses.get(str(status), 0) + 1
    return status


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
            status = await send(session, req, tally)
            if time.time() <= end and status:
                tally.in_window += 1
                tally.latencies_ms.append((time.perf_counter() - t0) * 1000)

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
        status = await send(session, req, tally)
        if status:
            tally.latencies_ms.append((time.perf_counter() - scheduled) * 1000)
            tally.in_window += 1
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
        "records": tally.records,
        "cpu_s": cpu_s,
    }


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as fh:
        loaded = orjson.loads(fh.read())
    result = run_loop(main(loaded))
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
