"""Holds many SSE streams at once, cheaply (one asyncio protocol per socket, no HTTP client library).

``python -m bench.sse_clients SPEC.json``: opens every stream in the spec (a list of paths), prints
``ready <opened> <failed>`` once each has shown its first event, then waits for a line on stdin; from
then on it notes when each stream receives its next event, and after ``wait_s`` (or once all have)
prints ``{"received": [...arrival wall times...]}``.

``measure_sse`` is the harness side: streams held, RSS per stream, and one change fanned out.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import TYPE_CHECKING, Any

import orjson

from bench.loadgen import run_loop
from shared.runner import die_with_parent

if TYPE_CHECKING:
    from bench.run import Bench

OPEN_AT_ONCE = 100


class Stream(asyncio.Protocol):
    def __init__(self, request: bytes, opened: asyncio.Future[bool]) -> None:
        self.request = request
        self.opened = opened
        self.events = 0
        self.mark = -1  # events seen when the harness said "go"
        self.arrived = 0.0
        self.all_arrived: asyncio.Event | None = None
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]  # uvloop's transports are not asyncio's

    def data_received(self, data: bytes) -> None:
        if not self.opened.done() and data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.1 200"):
            self.opened.set_result(False)  # refused: no point waiting for events
            return
        chunk = self.tail + data
        self.events += chunk.count(b"\ndata:") + chunk.startswith(b"data:")
        self.tail = chunk[-6:]
        if self.events and not self.opened.done():
            self.opened.set_result(True)
        if self.mark >= 0 and self.events > self.mark and not self.arrived:
            self.arrived = time.time()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_result(False)


async def open_all(host: str, port: int, paths: list[str], token: str) -> tuple[list[Stream], int]:
    loop = asyncio.get_running_loop()
    streams: list[Stream] = []
    failed = 0
    errors: dict[str, int] = {}
    sem = asyncio.Semaphore(OPEN_AT_ONCE)

    async def one(path: str) -> None:
        nonlocal failed
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                   "Accept: text/event-stream\r\n\r\n").encode()
        async with sem:
            opened: asyncio.Future[bool] = loop.create_future()
            try:
                _, proto = await loop.create_connection(lambda: Stream(request, opened), host, port)
                ok = await asyncio.wait_for(opened, 10)
            except (OSError, TimeoutError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                ok = False
            if ok:
                streams.append(proto)
            else:
                failed += 1

    await asyncio.gather(*(one(p) for p in paths))
    if errors:
        print(f"sse_clients: streams that did not open: {errors}", file=sys.stderr, flush=True)
    return streams, failed


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    streams, failed = await open_all(spec["host"], spec["port"], spec["paths"], spec["token"])
    sys.stdout.write(f"ready {len(streams)} {failed}\n")
    sys.stdout.flush()
    await asyncio.to_thread(sys.stdin.readline)
    watched = streams[: spec["fanout"]]
    for s in watched:
        s.mark = s.events
    deadline = time.monotonic() + spec["wait_s"]
    while time.monotonic() < deadline and not all(s.arrived for s in watched):
        await asyncio.sleep(0.01)
    return {"received": [s.arrived for s in watched if s.arrived], "watched": len(watched)}


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def measure_sse(bench: Bench, n: int) -> dict[str, float]:
    """Open ``n`` streams on one status API process (10 per connection), and fan one change out to the
    ``fanout`` streams watching one connection."""
    from bench.run import PY, ROOT

    fanout = min(n, bench.plan.sse_fanout)
    fan_conn = bench.conns[0]
    paths = [f"/v1/connections/{fan_conn.id}/stream"] * fanout
    others = bench.conns[1:]
    paths += [f"/v1/connections/{others[i % len(others)].id}/stream" for i in range(n - fanout)]
    spec = {"host": "127.0.0.1", "port": bench.ports["status_api"], "paths": paths, "token": bench.token,
            "fanout": fanout, "wait_s": 30}
    path = os.path.join(bench.tmp, "sse.json")
    with open(path, "wb") as fh:
        fh.write(orjson.dumps(spec))
    pid = bench.procs.pid("status_api")
    before = rss_kib(pid)
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", "bench.sse_clients", path, cwd=ROOT, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, preexec_fn=die_with_parent, limit=2**26)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = (await proc.stdout.readline()).decode().split()
        opened, failed = int(line[1]), int(line[2])
        await asyncio.sleep(1.0)
        after = rss_kib(pid)
        sent_at = time.time()
        await bench.send_one(fan_conn)
        out, _ = await proc.communicate(b"go\n")
        result = orjson.loads(out.strip().splitlines()[-1])
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    arrivals = sorted(t - sent_at for t in result["received"])
    if failed:
        bench.notes.append(f"SSE: {failed} of {n} streams could not be opened")
    if len(arrivals) < fanout:
        bench.notes.append(f"SSE: only {len(arrivals)} of {fanout} streams got the change")
    return {
        "streams": float(opened),
        "rss_per_stream_kib": (after - before) / max(1, opened),
        "fanout": float(fanout),
        "fanout_p50_ms": arrivals[len(arrivals) // 2] * 1000 if arrivals else float("nan"),
        "fanout_all_ms": arrivals[-1] * 1000 if arrivals else float("nan"),
    }


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as fh:
        loaded = orjson.loads(fh.read())
    sys.stdout.buffer.write(orjson.dumps(run_loop(main(loaded))) + b"\n")
