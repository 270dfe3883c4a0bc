"""Instructions per status read, ours against the limit, counted by callgrind: ``python -m bench.instructions``.

CPU time per request moves by 5-10 % from one run to the next on a shared 2-core box, as much as most
single cuts save. The number of instructions a process executes for the same requests does not:
``valgrind --tool=callgrind`` counts them, whatever else the machine is doing. This runs the real status
API and the ``json-redis`` limit (``bench.limits``) under callgrind, each in a process of its own on a
fresh prefix, makes connections through the API and a browser token of their account, warms each up,
then zeroes the counts (``callgrind_control -z``), sends the same reads as ``bench.reads`` (``GET
/v1/connections/{id}``, ``CONCURRENCY`` in flight), has the counts written out (``callgrind_control
-d``) and prints instructions per request.

Instructions are user space only: the kernel's part (the sockets) is not in them, and is about the same
for both. Under callgrind a process runs some fifty times slower, so this sends a few thousand requests,
not a saturating load: each request's own work is what it measures, not how a busy loop amortises its
wake-ups. Settings: ``--requests``, ``--connections``, ``--concurrency``; ``valgrind`` must be installed.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import shutil
import subprocess
import sys
import tempfile
import time

import aiohttp

from bench.plan import PY, TOKEN, Plan, free_port
from bench.processes import say, wait_http, wait_port
from bench.system import System

STARTUP_S = 600  # a service's start under callgrind: imports run fifty times slower too


def callgrind(out_dir: str) -> list[str]:
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_dir}/%p.out"]


def dumped_instructions(out_dir: str, pid: int) -> int:
    """Ask callgrind in ``pid`` to write its counts since the last zeroing; return their total."""
    before = set(glob.glob(f"{out_dir}/{pid}.out.*"))
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    for _ in range(300):
        written = set(glob.glob(f"{out_dir}/{pid}.out.*")) - before
        if written:
            path = written.pop()
            for _ in range(50):  # written by the other process: wait for its summary line
                total = summary(path)
                if total is not None:
                    return total
                time.sleep(0.2)
        time.sleep(0.2)
    raise RuntimeError(f"callgrind wrote no counts for process {pid}")


def summary(path: str) -> int | None:
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    return None


async def send(urls: list[str], headers: dict[str, str], n: int, concurrency: int) -> None:
    """``n`` GETs of ``urls`` in turn, ``concurrency`` at a time; each must answer 200."""
    sent = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), headers=headers) as session:

        async def one_at_a_time() -> None:
            nonlocal sent
            while sent < n:
                url = urls[sent % len(urls)]
                sent += 1
                async with session.get(url) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"GET {url}: {resp.status}")

        await asyncio.gather(*(one_at_a_time() for _ in range(concurrency)))


async def measure(args: argparse.Namespace) -> dict[str, float]:
    plan = Plan.from_env()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        system = System(plan, tmp)
        limit_port = free_port()
        system.procs.start("status_api", [*callgrind(tmp), PY, "-m", "services.status_api"], system.service_env())
        system.procs.start("json-redis", [
            *callgrind(tmp), PY, "-m", "bench.limits", "json-redis", "--port", str(limit_port), "--workers", "1",
            "--redis-url", plan.redis_url, "--prefix", plan.prefix,
        ])
        try:
            say("starting the status API and the json-redis limit under callgrind")
            await wait_http(f"{system.api}/readyz", STARTUP_S)
            await wait_port(limit_port, STARTUP_S)
            account = "acct-bench-instructions"
            ids = [c.id for c in await system.create_connections(args.connections, account)]
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session, \
                    session.post(f"{system.api}/v1/accounts/{account}/tokens", json={}) as resp:
                browser_token = str((await resp.json())["token"])
            api_pid, limit_pid = system.procs.pid("status_api"), system.procs.pid("json-redis")
            targets = {
                "limit": (f"http://127.0.0.1:{limit_port}", {}, limit_pid),
                "service": (system.api, {"Authorization": f"Bearer {TOKEN}"}, api_pid),
                "browser": (system.api, {"Authorization": f"Bearer {browser_token}"}, api_pid),
            }
            for name, (base, headers, pid) in targets.items():
                urls = [f"{base}/v1/connections/{cid}" for cid in ids]
                await send(urls, headers, args.requests // 4, args.concurrency)  # warm-up
                subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
                await send(urls, headers, args.requests, args.concurrency)
                results[name] = dumped_instructions(tmp, pid) / args.requests
                say(f"  {name:8} {results[name]:10,.0f} instructions/request")
        finally:
            system.procs.stop_all()
            await system.redis.aclose()
    return results


def report(results: dict[str, float], requests: int) -> str:
    limit = results["limit"]
    lines = [f"status reads, instructions per request (callgrind, user space, {requests:,} requests each)",
             f"{'':9}{'instructions':>14}{'x limit':>10}"]
    for name, value in results.items():
        lines.append(f"{name:9}{value:14,.0f}{value / limit:10.2f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind (callgrind) is not installed", file=sys.stderr)
        return 2
    print(report(asyncio.run(measure(args)), args.requests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
