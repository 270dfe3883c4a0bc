"""A Redis Cluster primary is killed (kill -9) while the verifier writes; its replica is promoted.

Replication is asynchronous: an effect the primary applied (and the verifier acked to RabbitMQ) but had
not yet sent to its replica is gone after the promotion. Measured twice under the same stream of signed
webhooks: with ``REDIS_WAIT_REPLICAS=0`` (the figure is what it is: a failover can lose acked effects,
and whether a given run does depends on timing) and with ``REDIS_WAIT_REPLICAS=1`` (the verifier acks a
delivery only once a replica confirmed its effect: nothing lost). Then the price of ``WAIT``: the store
step's p50/p99 with and without it.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp
import pytest

from services.verifier.app import wait_replicas
from services.verifier.config import Settings as VerifierSettings
from shared.errors import StoreUnavailable
from shared.keys import Keys
from shared.models import DeliveryMessage, now_ms
from shared.redis import RedisClient
from shared.store import Store
from tests.clusters.harness import StandardSender, Stream, until
from tests.clusters.redis_cluster import RedisClusterNodes
from tests.faults.harness import Services
from tests.faults.ledger import Ledger, Target, wait_stored, write_report

COMMAND = ".venv/bin/python -m pytest tests/clusters/test_redis_failover.py -q"
QUIET_EVENTS = 300
EVENTS = 3000  # at least, per run
pytestmark = pytest.mark.timeout(600)


async def _failover_run(wait_replicas: int, redis_nodes: RedisClusterNodes, services: Services,
                        receiver_port: int, client: RedisClient, prefix: str, targets: list[Target],
                        session: aiohttp.ClientSession) -> dict[str, object]:
    receiver = services.make("receiver")
    receiver.port = receiver_port
    await receiver.start(timeout_s=60)
    await services.make("verifier", REDIS_WAIT_REPLICAS=str(wait_replicas)).start(timeout_s=60)
    ledger = Ledger(f"cluster_redis_primary_killed_wait_{wait_replicas}")
    sender = StandardSender(session, ledger, targets)
    key = Keys(prefix).conn(targets[0].cid)
    victim = await asyncio.to_thread(redis_nodes.primary_for, key)
    async with Stream(sender, targets, f"redis{wait_replicas}", per_s=300) as stream:
        await until(lambda: ledger.accepted >= QUIET_EVENTS, 60, "first events accepted")
        victim.kill()
        killed_at = time.monotonic()
        await asyncio.to_thread(redis_nodes.wait_promoted, key, victim, 60)
        promoted_after_s = time.monotonic() - killed_at
        accepted = ledger.accepted
        await until(lambda: ledger.accepted >= accepted + QUIET_EVENTS, 60, "accepting after the failover")
        victim.start()  # back as a replica of the promoted node
        await asyncio.to_thread(redis_nodes.wait_replicas_in_sync, 60)
        accepted = ledger.accepted
        await until(lambda: ledger.accepted >= accepted + QUIET_EVENTS, 60, "accepting with the node back")
        await until(lambda: stream.sent >= EVENTS, 60, f"{EVENTS} events sent")
        await stream.stop()
    retries = await sender.retry_refused(rounds=40)
    await wait_stored(client, prefix, targets, len(ledger.accepted_events), timeout_s=60)  # type: ignore[arg-type]
    await asyncio.sleep(1)
    ledger.extra.update(redis_wait_replicas=wait_replicas, killed_primary=victim.address,
                        failover_s=round(promoted_after_s, 1), retries_after_recovery=retries)
    figures = await ledger.reconcile(client, prefix, targets)  # type: ignore[arg-type]
    ledger.write(f"{COMMAND} -k wait_{wait_replicas}")
    print(ledger.summary())
    assert figures["unanswered"] == 0, ledger.summary()
    assert set(ledger.statuses) <= {202, 503}, ledger.summary()
    assert figures["doubled"] == 0, ledger.summary()
    assert figures["sent"] == figures["accepted"] + figures["refused"], ledger.summary()
    await services.procs[-1].terminate()
    await receiver.terminate()
    return figures


async def test_primary_killed_without_wait_measures_the_loss(
    redis_nodes: RedisClusterNodes, cluster_client: RedisClient, redis_services: Services, receiver_port: int,
    standard_targets, prefix: str, session: aiohttp.ClientSession,
) -> None:
    """``REDIS_WAIT_REPLICAS=0``: the measured loss is reported, not asserted (it may be 0 in a run)."""
    targets = await standard_targets(6, cluster_client)
    figures = await _failover_run(0, redis_nodes, redis_services, receiver_port, cluster_client, prefix,
                                  targets, session)
    assert figures["stored_events"] + figures["lost"] >= figures["events_accepted"]


async def test_primary_killed_with_wait_loses_nothing(
    redis_nodes: RedisClusterNodes, cluster_client: RedisClient, redis_services: Services, receiver_port: int,
    standard_targets, prefix: str, session: aiohttp.ClientSession,
) -> None:
    targets = await standard_targets(6, cluster_client)
    figures = await _failover_run(1, redis_nodes, redis_services, receiver_port, cluster_client, prefix,
                                  targets, session)
    assert figures["lost"] == 0, figures


async def test_the_latency_wait_adds_to_the_store_step(
    redis_nodes: RedisClusterNodes, cluster_client: RedisClient, prefix: str, standard_targets,
) -> None:
    """The verifier's store step (``apply_deliveries`` of one delivery), timed without and with WAIT 1."""
    targets = await standard_targets(3, cluster_client)
    figures: dict[str, object] = {}
    for wait in (0, 1):
        store = Store(cluster_client, prefix, wait_replicas=wait, wait_timeout_ms=500)
        timings = []
        for i in range(400):
            target = targets[i % len(targets)]
            msg = DeliveryMessage(f"lat{wait}x{i}", target.cid, "standard-webhooks", now_ms(), "verified",
                                  event_id=f"msg_lat_{wait}_{i}")
            started = time.perf_counter()
            [result] = await store.apply_deliveries([msg])
            timings.append(time.perf_counter() - started)
            assert not isinstance(result, Exception), result
        timings.sort()
        figures[f"wait_{wait}_p50_ms"] = round(statistics.median(timings) * 1000, 2)
        figures[f"wait_{wait}_p99_ms"] = round(timings[int(len(timings) * 0.99)] * 1000, 2)
    write_report("cluster_redis_wait_latency", {**figures, "samples": 400, "command": f"{COMMAND} -k latency"})
    print(figures)
    assert all(isinstance(v, float) and v > 0 for v in figures.values())


async def test_a_write_no_replica_confirms_is_not_stored_and_retries_as_a_duplicate(
    redis_nodes: RedisClusterNodes, cluster_client: RedisClient, prefix: str, standard_targets,
) -> None:
    """Asking for more replicas than confirm (2; each primary has 1) holds the delivery for the bounded
    timeout, then refuses it as an outage; the retry (here asking for 1) applies nothing twice."""
    [target] = await standard_targets(1, cluster_client)
    def delivery(n: int) -> DeliveryMessage:
        return DeliveryMessage(f"nowait{n}", target.cid, "standard-webhooks", now_ms(), "verified",
                               event_id=f"msg_nowait_{n}")

    await Store(cluster_client, prefix, wait_replicas=1).apply_deliveries([delivery(0)])  # scripts loaded
    with pytest.raises(StoreUnavailable):
        await Store(cluster_client, prefix, wait_replicas=2, wait_timeout_ms=200).apply_deliveries([delivery(1)])
    [result] = await Store(cluster_client, prefix, wait_replicas=1).apply_deliveries([delivery(1)])
    assert not isinstance(result, Exception) and result.status == "duplicate"
    assert await cluster_client.hget(Keys(prefix).conn(target.cid), "events_received") == "2"


async def test_the_verifier_waits_for_a_replica_by_default_only_where_there_is_one(
    redis_nodes: RedisClusterNodes, cluster_client: RedisClient, redis_client: RedisClient,
) -> None:
    auto = VerifierSettings.from_env(redis_url=redis_nodes.url)
    assert auto.redis_wait_replicas == -1
    assert await wait_replicas(auto, cluster_client) == 1  # every primary has a replica
    assert await wait_replicas(VerifierSettings.from_env(), redis_client) == 0  # one server
    assert await wait_replicas(VerifierSettings.from_env(redis_wait_replicas=0), cluster_client) == 0
