"""`make bench`: our services and the limits of this box, measured in one run, printed as one table.

The harness always starts its own copy of the system (receiver, verifier, status API as separate
processes, as ``make run`` starts them) on free loopback ports with a fresh Redis key prefix and
RabbitMQ names (``bench-<hex>``), so it neither disturbs nor is disturbed by a running ``make run``,
and removes every key, queue and exchange it made, and every process it started, when it ends.

``BENCH_QUICK=1`` runs one short round of everything (for iteration); the full run takes the median
of ``BENCH_ROUNDS`` (3) rounds of ``BENCH_DURATION_S`` (5) seconds each.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import sys
import tempfile
import time
from importlib import metadata

import aio_pika
import redis.asyncio as aioredis

from bench.growth import Growth
from bench.harness import Bench
from bench.loadgen import run_loop
from bench.plan import ROOT, Plan
from bench.processes import say
from bench.scaleout import scale_out
from bench.sizing import size_for
from bench.stats import median
from bench.table import build_rows, cpu_table, render
from shared.store import DEDUPE_TTL_S


async def machine(plan: Plan) -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    client = aioredis.Redis.from_url(plan.redis_url)
    try:
        redis_version = (await client.info("server"))["redis_version"]
    finally:
        await client.aclose()
    connection = await aio_pika.connect(plan.amqp_url)
    async with connection:
        underlay = connection.transport
        props = underlay.connection.server_properties if underlay is not None else {}
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


async def amain() -> int:
    plan = Plan.from_env()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hookstatus-bench-") as tmp:
        bench = Bench(plan, tmp)
        try:
            await bench.start()
            await bench.rounds()
            await bench.streams()
            growth = Growth(bench)
            await growth.run()
            await bench.variants()
            await bench.finish()
            say("scale-out: 1 receiver + 1 verifier, then 2 + 2, at one rate")
            scale = await scale_out(bench)
            await bench.final_check()
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
    print(render(build_rows(bench)))
    print()
    print(cpu_table({"ours": bench.cpu["ours"], "minimal pipeline": bench.cpu["minimal"]},
                    {"minimal pipeline": {"receiver": "minimal receiver", "verifier": "minimal consumer"}}))
    print(f"(open loop at {median(bench.m['rate']):,.0f}/s, the same rate for both; median of the rounds)")
    print(busy_line(bench))
    print()
    if bench.cpu["saturated ours"]:
        print(cpu_table({"ours": bench.cpu["saturated ours"], "minimal pipeline": bench.cpu["saturated minimal"]},
                        {"minimal pipeline": {"receiver": "minimal receiver", "verifier": "minimal consumer"}}))
        print("(whole path at saturation: each process's CPU from the load's start until the last webhook was "
              "stored, divided by the webhooks; median of the rounds)")
        print()
    print("ledgers (every load: sent = accepted + refused; accepted = counted by what stores them):")
    for line in bench.ledgers:
        print(f"  {line}")
    print()
    print("\n".join(growth.tables()))
    print(f"plots: {', '.join(os.path.relpath(p, ROOT) for p in growth.plots)}")
    print()
    if scale:
        print(f"scale-out at {scale['rate']:,.0f}/s (open loop), CPU per webhook by process:")
        print(cpu_table({"1 receiver + 1 verifier": [scale["1"]], "2 receivers + 2 verifiers": [scale["2"]]}))
        print()
    if bench.cpu["ours"]:
        us = {k: median([run.get(k, float("nan")) for run in bench.cpu["ours"]]) for k in bench.cpu["ours"][0]}
        per_conn, per_delivery = growth.kept_bytes()
        for rate in (10_000, 100_000):
            sized = size_for(rate, us, median(bench.m["publish"]), per_conn, 1_000_000, per_delivery, DEDUPE_TTL_S)
            print(f"sizing for {rate:,}/s (1,000,000 connections): " + "; ".join(f"{k}: {v}" for k, v in sized.items()))
        print()
    for note in bench.notes:
        print(f"note: {note}")
    for void in bench.void:
        print(f"VOID: {void}")
    print(f"(bench took {time.monotonic() - started:.0f} s)")
    return 1 if bench.void else 0


def busy_line(bench: Bench) -> str:
    """What the open-loop rate asks of the box: CPU per webhook (every process) x rate, in CPUs. Past the
    box's CPUs the processes queue for CPU, and latency grows with the queue whatever the code does."""
    rate, cpus = median(bench.m["rate"]), os.cpu_count() or 1
    needs = []
    for name, runs in (("ours", bench.cpu["ours"]), ("the minimal pipeline", bench.cpu["minimal"])):
        if runs:
            needs.append(f"{name} {median([sum(run.values()) for run in runs]) * rate / 1e6:.2f}")
    return (f"(CPUs that rate keeps busy, all processes and the load generator included, of the box's {cpus}: "
            + ", ".join(needs) + ")")


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    sys.exit(run_loop(amain()))


if __name__ == "__main__":
    main()
