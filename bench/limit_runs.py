"""What this box can do at best, measured in the same run as ours: the limit servers of ``bench.limits``
(started once, idle while ours run) and its publish and consume loops."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench.load import LoadResult, get_spec, hook_spec
from bench.plan import PY, ROOT, free_port
from bench.processes import wait_port
from bench.system import System
from shared.runner import die_with_parent

Load = Callable[[str, dict[str, Any]], Awaitable[LoadResult]]


class Limits:
    def __init__(self, system: System, load: Load) -> None:
        self.system = system
        self.plan = system.plan
        self.load = load  # runs a spec and records what was refused or lost
        self.urls: dict[str, str] = {}
        self.secret = ""

    def start(self, name: str, port: int, *extra: str, workers: int = 1) -> None:
        self.system.procs.start(name, [PY, "-m", "bench.limits", name, "--port", str(port), "--workers", str(workers),
                                "--amqp-url", self.plan.amqp_url, "--redis-url", self.plan.redis_url,
                                "--prefix", self.plan.prefix, *extra])

    async def start_all(self) -> None:
        """Start the limit servers once; they idle while ours run (so rounds can alternate)."""
        workers = self.plan.receiver_workers
        self.secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        servers = {
            "bare": ((), workers),
            "minimal-receiver": (("--secret", self.secret, "--queue", f"{self.plan.prefix}.limit.receiver"),
                                 workers),
            "json-redis": ((), 1),  # like the status API: one process
        }
        for name, (extra, n) in servers.items():
            port = free_port()
            self.start(name, port, *extra, workers=n)
            self.urls[name] = f"http://127.0.0.1:{port}"
        for url in self.urls.values():
            await wait_port(int(url.rsplit(":", 1)[1]))
        await asyncio.sleep(0.5 * workers)

    async def measure(self, name: str, mode: str) -> LoadResult:
        base, ids = self.urls[name], [c.id for c in self.system.conns]
        if name == "json-redis":
            spec = get_spec(self.plan, mode, [f"{base}/v1/connections/{i}" for i in ids], {})
        else:
            keys = [self.secret] * len(ids) if name == "minimal-receiver" else [c.secret for c in self.system.conns]
            spec = hook_spec(self.plan, mode, [f"{base}/hooks/{i}" for i in ids], keys)
        result = await self.load(f"limit {name} {mode}", spec)
        if name == "minimal-receiver":
            await self.system.purge_queue(f"{self.plan.prefix}.limit.receiver")
        return result

    async def loop(self, name: str, queue: str, count: int) -> float:
        out = subprocess.run(
            [PY, "-m", "bench.limits", name, "--amqp-url", self.plan.amqp_url, "--redis-url", self.plan.redis_url,
             "--prefix", self.plan.prefix, "--queue", queue, "--count", str(count),
             "--concurrency", str(self.plan.concurrency)],
            cwd=ROOT, capture_output=True, timeout=300, preexec_fn=die_with_parent, check=True,
        )
        return float(orjson.loads(out.stdout.strip().splitlines()[-1])["rate"])

    def redis_benchmark(self) -> tuple[float, float]:
        parts = urlsplit(self.plan.redis_url)
        out = subprocess.run(
            ["redis-benchmark", "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379), "-t", "get",
             "-n", str(20000 if self.plan.quick else 100000), "-c", str(self.plan.concurrency), "--csv"],
            capture_output=True, text=True, timeout=120, check=True,
        )
        line = [ln for ln in out.stdout.splitlines() if ln.startswith('"GET"')][0]
        cells = [c.strip('"') for c in line.split(",")]
        return float(cells[1]), float(cells[6])

    def stop_all(self) -> None:
        for name in self.urls:
            self.system.procs.stop(name)
