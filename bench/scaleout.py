"""Scale-out: the same load at one rate through 1 receiver + 1 verifier, then 2 receivers + 2 verifiers
behind the same queue (each a process of its own, on its own port): CPU per webhook by process, which
must not grow with the replicas."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.harness import per_webhook_us
from bench.plan import free_port
from bench.processes import cpu_seconds, wait_http
from bench.stats import median

if TYPE_CHECKING:
    from bench.harness import Bench


async def _start(bench: Bench, name: str) -> tuple[str, int]:
    """Start receiver-<name> (one worker) and verifier-<name>: the receiver's base URL, the verifier's port."""
    rport, vport = free_port(), free_port()
    bench.system.start_service(f"receiver-{name}", "receiver", RECEIVER_PORT=str(rport),
                               RECEIVER_ADMIN_PORT=str(free_port()), RECEIVER_WORKERS="1")
    bench.system.start_service(f"verifier-{name}", "verifier", VERIFIER_PORT=str(vport))
    await wait_http(f"http://127.0.0.1:{rport}/readyz")
    await wait_http(f"http://127.0.0.1:{vport}/readyz")
    return f"http://127.0.0.1:{rport}", vport


async def _measure(bench: Bench, rate: float, names: list[str]) -> dict[str, float]:
    system = bench.system
    groups = system.cpu_groups(receivers=tuple(f"receiver-{n}" for n in names),
                               verifiers=tuple(f"verifier-{n}" for n in names))
    groups.pop("status API")
    before, cpu_before = await bench.applied(), cpu_seconds(groups)
    what = f"scale-out, {len(names)} receiver(s) + {len(names)} verifier(s) at {rate:,.0f}/s"
    result = await bench.load(what, bench.ours(bench.base, "rate", rate=rate))
    await bench.settled(bench.applied, before, result, what)
    bench.counts_for_final_check(bench.base, result.accepted)
    used = {k: v - cpu_before[k] for k, v in cpu_seconds(groups).items()}
    out = per_webhook_us(used, result.accepted)
    out["p99 ms (webhook -> 202)"] = result.p(99)
    return out


async def scale_out(bench: Bench) -> dict[str, Any]:
    """The main receiver and verifier are stopped for this (it runs last)."""
    system = bench.system
    capacity = median(bench.m["base:min_pipe"])
    rate = capacity / 4 if capacity == capacity else float(bench.plan.rate)
    system.procs.stop("receiver")
    system.procs.stop("verifier")
    bases, ports = [], []
    out: dict[str, Any] = {"rate": rate}
    for n, name in enumerate(("a", "b"), start=1):
        base, vport = await _start(bench, name)
        bases.append(base)
        ports.append(vport)
        system.receiver_bases, system.verifier_ports = list(bases), list(ports)
        out[str(n)] = await _measure(bench, rate, ["a", "b"][:n])
    return out
