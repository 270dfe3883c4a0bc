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

from bench.harness import Bench
from bench.loadgen import run_loop
from bench.plan import Plan
from bench.processes import say
from bench.table import render


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
    sys.exit(run_loop(amain()))


if __name__ == "__main__":
    main()
