"""Instructions per request, ours against the limit, counted by callgrind: ``python -m bench.instructions``.

CPU time per request moves by 5-10 % from one run to the next on a shared 2-core box, as much as most
single cuts save. The number of instructions a process executes for the same requests does not:
``valgrind --tool=callgrind`` counts them, whatever else the machine is doing. Each server runs under
callgrind in a process of its own, on a fresh prefix; each is warmed up, then its counts are zeroed
(``callgrind_control -z``), it is sent the requests (``--concurrency`` in flight), its counts are written
out (``callgrind_control -d``), and the instructions per request are printed.

- ``reads`` (the default): the status API and the ``json-redis`` limit (``bench.limits``), sent the
  reads of ``bench.reads`` (``GET /v1/connections/{id}`` of connections made through the API, with the
  service token and with a browser token of their account).
- ``webhooks``: the receiver (one process) and the minimal receiver, sent signed Standard Webhooks
  deliveries of 1 KiB, each to its connection (the minimal receiver: one secret for all). No verifier
  runs; the queues are purged afterwards.

Instructions are user space only: the kernel's part (the sockets) is not in them, nor what an
instruction costs in cycles. Under callgrind a process runs some fifty times slower, so this sends a
few thousand requests, not a saturating load: each request's own work is what it measures, not how a
busy loop amortises its wake-ups. Settings: ``--requests``, ``--connections``, ``--concurrency``;
``valgrind`` must be installed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from standardwebhooks import Webhook

from bench.loadgen import event_body, sign
from bench.plan import PY, TOKEN, Plan, free_port
from bench.processes import say, wait_http, wait_port
from bench.system import System

STARTUP_S = 600  # a service's start under callgrind: imports run fifty times slower too
WEBHOOK_BYTES = 1024


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


@dataclass(slots=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None
    expect: int = 200


async def send(requests: Callable[[int], Request], first: int, n: int, concurrency: int) -> None:
    """Requests ``first`` to ``first + n - 1`` (``requests(i)`` is the i-th), ``concurrency`` at a time;
    each must be answered with its ``expect``ed status."""
    sent = first
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def one_at_a_time() -> None:
            nonlocal sent
            while sent < first + n:
                req = requests(sent)
                sent += 1
                async with session.request(req.method, req.url, headers=req.headers, data=req.body) as resp:
                    await resp.read()
                    if resp.status != req.expect:
                        raise RuntimeError(f"{req.method} {req.url}: {resp.status}")

        await asyncio.gather(*(one_at_a_time() for _ in range(concurrency)))


Target = tuple[Callable[[int], Request], int]  # the i-th request to send, and the pid of the server counted


async def counted(tmp: str, targets: dict[str, Target], args: argparse.Namespace) -> dict[str, float]:
    results: dict[str, float] = {}
    for name, (requests, pid) in targets.items():
        warm_up = args.requests // 4
        await send(requests, 0, warm_up, args.concurrency)
        subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
        await send(requests, warm_up, args.requests, args.concurrency)
        results[name] = dumped_instructions(tmp, pid) / args.requests
        say(f"  {name:8} {results[name]:10,.0f} instructions/request")
    return results


async def measure_reads(args: argparse.Namespace) -> dict[str, float]:
    plan = Plan.from_env()
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

            def reads(base: str, headers: dict[str, str]) -> Callable[[int], Request]:
                every = [Request("GET", f"{base}/v1/connections/{cid}", headers) for cid in ids]
                return lambda i: every[i % len(every)]

            return await counted(tmp, {
                "limit": (reads(f"http://127.0.0.1:{limit_port}", {}), limit_pid),
                "service": (reads(system.api, {"Authorization": f"Bearer {TOKEN}"}), api_pid),
                "browser": (reads(system.api, {"Authorization": f"Bearer {browser_token}"}), api_pid),
            }, args)
        finally:
            system.procs.stop_all()
            await system.redis.aclose()


def signed(url: str, secret: str, seq: int) -> Request:
    return Request("POST", url, sign({"url": url}, seq, Webhook(secret), WEBHOOK_BYTES).headers,
                   event_body(seq, WEBHOOK_BYTES), expect=202)


async def measure_webhooks(args: argparse.Namespace) -> dict[str, float]:
    plan = Plan.from_env()
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        system = System(plan, tmp)
        limit_port, limit_queue = free_port(), f"{plan.prefix}.limit.receiver"
        limit_secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        system.start_service("status_api")
        system.procs.start("receiver", [*callgrind(tmp), PY, "-m", "services.receiver"],
                           {**system.service_env(), "RECEIVER_WORKERS": "1"})
        system.procs.start("minimal-receiver", [
            *callgrind(tmp), PY, "-m", "bench.limits", "minimal-receiver", "--port", str(limit_port),
            "--workers", "1", "--amqp-url", plan.amqp_url, "--redis-url", plan.redis_url, "--prefix", plan.prefix,
            "--secret", limit_secret, "--queue", limit_queue,
        ])
        try:
            say("starting the receiver and the minimal receiver under callgrind")
            await wait_http(f"{system.api}/readyz")
            await wait_http(f"{system.receiver}/readyz", STARTUP_S)
            await wait_port(limit_port, STARTUP_S)
            conns = await system.create_connections(args.connections, "acct-bench-instructions")
            return await counted(tmp, {
                "limit": (lambda i: signed(f"http://127.0.0.1:{limit_port}/hooks/{conns[i % len(conns)].id}",
                                           limit_secret, i), system.procs.pid("minimal-receiver")),
                "receiver": (lambda i: signed(conns[i % len(conns)].url, conns[i % len(conns)].secret, i),
                             system.procs.pid("receiver")),
            }, args)
        finally:
            system.procs.stop_all()
            for queue in (limit_queue, f"{plan.prefix}.deliveries"):
                await system.purge_queue(queue)
            await system.redis.aclose()


def report(what: str, results: dict[str, float], requests: int) -> str:
    limit = results["limit"]
    lines = [f"{what}, instructions per request (callgrind, user space, {requests:,} requests each)",
             f"{'':9}{'instructions':>14}{'x limit':>10}"]
    for name, value in results.items():
        lines.append(f"{name:9}{value:14,.0f}{value / limit:10.2f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", nargs="?", choices=("reads", "webhooks"), default="reads")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind (callgrind) is not installed", file=sys.stderr)
        return 2
    measure = measure_reads if args.what == "reads" else measure_webhooks
    print(report(args.what, asyncio.run(measure(args)), args.requests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
