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
HookKw = Callable[[list[str], str | None], dict[str, Any]]  # (bases, secret) -> the spec's targets


class Limits:
    def __init__(self, system: System, load: Load) -> None:
        self.system = system
        self.plan = system.plan
        self.load = load  # runs a spec and records what was refused or lost
        self.urls: dict[str, str] = {}
        self.secret = ""
        self.pipeline_queue = f"{self.plan.prefix}.limit.pipeline"
        self.pipeline_counter = f"{self.plan.prefix}:limit:pipeline"

    def start(self, proc: str, name: str, port: int, *extra: str, workers: int = 1) -> None:
        self.system.procs.start(proc, [PY, "-m", "bench.limits", name, "--port", str(port), "--workers", str(workers),
                                "--amqp-url", self.plan.amqp_url, "--redis-url", self.plan.redis_url,
                                "--prefix", self.plan.prefix, *extra])

    async def start_all(self) -> None:
        """Start the limit servers once; they idle while ours run (so rounds can alternate)."""
        workers = self.plan.receiver_workers
        self.secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        servers = {
            "bare": ("bare", (), workers),
            "minimal-receiver": ("minimal-receiver", ("--secret", self.secret, "--queue",
                                                      f"{self.plan.prefix}.limit.receiver"), workers),
            # The minimal pipeline: the same minimal receiver, publishing to a queue that a minimal
            # consumer drains (one Redis write per message, then the ack).
            "pipeline-receiver": ("minimal-receiver", ("--secret", self.secret, "--queue", self.pipeline_queue),
                                  workers),
            "json-redis": ("json-redis", (), 1),  # like the status API: one process
        }
        for proc, (name, extra, n) in servers.items():
            port = free_port()
            self.start(proc, name, port, *extra, workers=n)
            self.urls[proc] = f"http://127.0.0.1:{port}"
        self.start("pipeline-consumer", "pipeline-consumer", 0, "--queue", self.pipeline_queue)
        for url in self.urls.values():
            await wait_port(int(url.rsplit(":", 1)[1]))
        await asyncio.sleep(0.5 * workers)

    async def measure(self, name: str, mode: str, hook_kw: HookKw, get_kw: dict[str, Any] | None = None,
                      **kw: Any) -> LoadResult:
        """One load against limit server ``name``; ``hook_kw`` gives the webhooks' targets (with the
        limit's own secret for the minimal receivers), ``get_kw`` the GETs' for ``json-redis``."""
        base = self.urls[name]
        if name == "json-redis":
            spec = get_spec(self.plan, mode, [], {}, **(get_kw or {}), **kw)
        else:
            secret = self.secret if name in ("minimal-receiver", "pipeline-receiver") else None
            spec = hook_spec(self.plan, mode, [], [], **hook_kw([base], secret), **kw)
        result = await self.load(f"limit {name} {mode}", spec)
        if name == "minimal-receiver":
            await self.system.purge_queue(f"{self.plan.prefix}.limit.receiver")
        return result

    async def pipeline_counted(self) -> int:
        """Messages the minimal pipeline's consumer has stored (its Redis counter)."""
        return int(await self.system.redis.hget(self.pipeline_counter, "n") or 0)

    def pipeline_cpu_groups(self) -> dict[str, list[int]]:
        return {"receiver": self.system.tree("pipeline-receiver"), "verifier": self.system.tree("pipeline-consumer"),
                **self.system.server_groups()}

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
        for name in [*self.urls, "pipeline-consumer"]:
            self.system.procs.stop(name)
