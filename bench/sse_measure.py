"""The harness side of the SSE rows: how many streams one status API process holds, the memory each
costs, and how fast one change reaches every stream watching a connection (``bench.sse_clients`` holds
the streams, in a process of its own)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import orjson

from bench.plan import PY, ROOT
from bench.system import Conn, System
from shared.runner import die_with_parent


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def measure_sse(system: System, n: int, fanout: int, send_one: Callable[[Conn], Awaitable[None]],
                      notes: list[str]) -> dict[str, float]:
    """Open ``n`` streams on one status API process (10 per connection), and fan one change out to the
    ``fanout`` streams watching one connection (the change is made by ``send_one``). Streams that did
    not open or did not see the change are added to ``notes``."""
    fanout = min(n, fanout)
    fan_conn = system.conns[0]
    paths = [f"/v1/connections/{fan_conn.id}/stream"] * fanout
    others = system.conns[1:]
    paths += [f"/v1/connections/{others[i % len(others)].id}/stream" for i in range(n - fanout)]
    spec = {"host": "127.0.0.1", "port": system.ports["status_api"], "paths": paths, "token": system.token,
            "fanout": fanout, "wait_s": 30}
    path = os.path.join(system.tmp, "sse.json")
    with open(path, "wb") as fh:
        fh.write(orjson.dumps(spec))
    pid = system.procs.pid("status_api")
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
        await send_one(fan_conn)
        out, _ = await proc.communicate(b"go\n")
        result = orjson.loads(out.strip().splitlines()[-1])
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    arrivals = sorted(t - sent_at for t in result["received"])
    if failed:
        notes.append(f"SSE: {failed} of {n} streams could not be opened")
    if len(arrivals) < fanout:
        notes.append(f"SSE: only {len(arrivals)} of {fanout} streams got the change")
    return {
        "streams": float(opened),
        "rss_per_stream_kib": (after - before) / max(1, opened),
        "fanout": float(fanout),
        "fanout_p50_ms": arrivals[len(arrivals) // 2] * 1000 if arrivals else float("nan"),
        "fanout_all_ms": arrivals[-1] * 1000 if arrivals else float("nan"),
    }
