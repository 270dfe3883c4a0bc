"""Redis's own time per call of the apply script (``shared/lua/apply_delivery.lua``), alone:
``python -m bench.apply_script``.

Starts a private ``redis-server`` on a free port (no persistence), so ``INFO commandstats`` counts only
this run. Each run stores ``--connections`` connections in state ``connected``, gives each a few
verified events first (so the learned rhythm is in use, as on a live connection), resets the counters,
then applies ``--deliveries`` deliveries round-robin through ``Store.apply_deliveries`` in pipelines of
``--pipeline``, as the verifier does: verified ones with an event id, and a share ``--rejected`` of
rejected ones. It prints Redis's microseconds per ``EVALSHA`` per run, then min and median.

``--script NAME=SOURCE`` (repeatable) measures other versions of the script through the same ``Store``:
SOURCE is a file, or ``git:REV`` for the script at a git revision. Runs alternate between the versions,
so each sees the same load from the rest of the machine::

    python -m bench.apply_script --script before=git:HEAD~1 --script after=git:HEAD --runs 7
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import subprocess
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from bench.plan import free_port
from bench.processes import say, wait_port
from bench.stats import median
from shared import lua
from shared.models import DeliveryMessage
from shared.records import ConnectionRecord
from shared.store import Store

T0 = 1_800_000_000_000
GAP_MS = 60_000  # each connection's mean gap between events
WARM_EVENTS = 25  # per connection before measuring: past the learned rhythm's default 20


def script_source(spec: str) -> tuple[str, str]:
    """``NAME=SOURCE`` as (name, the script's text)."""
    name, _, where = spec.partition("=")
    if not name or not where:
        raise SystemExit(f"--script wants NAME=FILE or NAME=git:REV, not {spec!r}")
    if where.startswith("git:"):
        text = subprocess.run(["git", "show", f"{where[4:]}:shared/lua/apply_delivery.lua"],
                              check=True, capture_output=True, text=True).stdout
        return name, text
    return name, Path(where).read_text()


def deliveries(cids: list[str], count: int, start: int, rejected: float, rng: random.Random) -> list[DeliveryMessage]:
    """``count`` deliveries round-robin over the connections, each connection's ``GAP_MS`` apart (give
    or take a quarter, so the learned variance is not zero), from the ``start``-th on."""
    out = []
    for i in range(start, start + count):
        cid = cids[i % len(cids)]
        at = T0 + (i // len(cids)) * GAP_MS + rng.randrange(GAP_MS // 4)
        if rng.random() < rejected:
            out.append(DeliveryMessage(delivery_id=uuid.uuid4().hex, connection_id=cid, provider="stripe",
                                       received_at_ms=at, outcome="rejected", reason="signature_mismatch",
                                       message="no signature matches", checked_at_ms=at))
        else:
            out.append(DeliveryMessage(delivery_id=uuid.uuid4().hex, connection_id=cid, provider="stripe",
                                       received_at_ms=at, outcome="verified", event_id=f"evt_{uuid.uuid4().hex}",
                                       event_type="invoice.paid", checked_at_ms=at))
    return out


async def apply_all(store: Store, msgs: list[DeliveryMessage], pipeline: int) -> None:
    for n in range(0, len(msgs), pipeline):
        batch = msgs[n:n + pipeline]
        results = await store.apply_deliveries(batch, [m.received_at_ms + 5 for m in batch])
        bad = [r for r in results if isinstance(r, Exception) or r.status != "applied"]
        if bad:
            raise SystemExit(f"a delivery was not applied: {bad[0]!r}")


async def one_run(client: aioredis.Redis, source: str, args: argparse.Namespace, seed: int) -> float:
    """Redis's microseconds per apply script call in one run of ``source``."""
    await client.flushall()
    store = Store(client, f"bench-apply-{uuid.uuid4().hex[:8]}")
    store.scripts = dataclasses.replace(store.scripts, apply_delivery=client.register_script(source))
    cids = [uuid.uuid4().hex for _ in range(args.connections)]
    for cid in cids:
        await store.create(ConnectionRecord(
            id=cid, account_id=f"acct-{cid[:4]}", provider="stripe", state="connected", version=1,
            webhook_url=f"http://x/hooks/{cid}", secret="whsec_x", created_at_ms=T0, updated_at_ms=T0))
    rng = random.Random(seed)  # the same deliveries for each version in a round
    warm = WARM_EVENTS * len(cids)
    await apply_all(store, deliveries(cids, warm, 0, 0.0, rng), args.pipeline)
    await client.config_resetstat()
    await apply_all(store, deliveries(cids, args.deliveries, warm, args.rejected, rng), args.pipeline)
    stats = await client.info("commandstats")
    return float(stats["cmdstat_evalsha"]["usec_per_call"])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--script", action="append", default=[], help="NAME=FILE or NAME=git:REV")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--pipeline", type=int, default=256)
    parser.add_argument("--rejected", type=float, default=0.0, help="the share of rejected deliveries")
    args = parser.parse_args()
    versions = [script_source(s) for s in args.script] or [("current", lua.source("apply_delivery"))]
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        await wait_port(port)
        client = aioredis.Redis(port=port, decode_responses=True)
        timings: dict[str, list[float]] = {name: [] for name, _ in versions}
        for run in range(args.runs):
            for name, source in versions:
                timings[name].append(await one_run(client, source, args, seed=run))
                say(f"run {run + 1}/{args.runs} {name}: {timings[name][-1]:.2f} µs per call")
        await client.aclose()
    finally:
        server.terminate()
        server.wait()
    for name, values in timings.items():
        print(f"{name}: min {min(values):.2f} µs, median {median(values):.2f} µs per apply script call "
              f"({args.runs} runs, {args.deliveries} deliveries, {args.rejected:.0%} rejected)")


if __name__ == "__main__":
    asyncio.run(main())
