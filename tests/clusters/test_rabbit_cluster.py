"""A RabbitMQ cluster of three nodes loses a node under a stream of signed webhooks, and nothing is lost.

The services get every node in ``AMQP_URLS``; the deliveries queue is a quorum queue with a member on
each node. Faults, one at a time, each node brought back before the next: ``kill -9`` of the node that
leads the deliveries queue, then of the node the receiver is connected to, made the queue's leader first
(so the receiver loses its node and the queue's leader at once, and reconnects to a survivor that may
not know yet). The receiver answers 503 for
what it could not get confirmed, never a 202 that is later lost; the ledger checks every accepted event
is stored exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib

import aio_pika
import aiohttp
import pytest
import redis.asyncio as aioredis

from services.notifier.config import Settings as NotifierSettings
from services.notifier.topology import NotifyTopology
from shared.broker import Topology, amqp_connection
from tests.clusters.harness import StandardSender, Stream, until
from tests.clusters.rabbitmq import RabbitCluster, RabbitNode
from tests.faults.harness import ServiceProcess, Services
from tests.faults.ledger import Ledger, Target, wait_stored

COMMAND = ".venv/bin/python -m pytest tests/clusters/test_rabbit_cluster.py -q"
pytestmark = pytest.mark.timeout(900)  # booting a cluster on a busy machine takes minutes
QUIET_EVENTS = 300  # accepted between two faults: the cluster is serving again
EVENTS = 3000  # at least, per test


async def _start_services(services: Services, receiver_port: int) -> ServiceProcess:
    receiver = services.make("receiver", PUBLISH_TIMEOUT_S="3")
    receiver.port = receiver_port
    await receiver.start(timeout_s=60)
    await services.make("verifier").start(timeout_s=60)
    return receiver


async def _kill_and_recover(rabbit: RabbitCluster, node: RabbitNode, queue: str, ledger: Ledger) -> str:
    """kill -9 ``node``; wait until the cluster accepts webhooks again; note the queue's leader then;
    start the node and wait until it is back in the cluster (the stream goes on all along)."""
    node.kill()
    accepted = ledger.accepted
    await until(lambda: ledger.accepted >= accepted + QUIET_EVENTS, 120, f"accepting again without {node.node}")
    leader = await asyncio.to_thread(rabbit.queue_leader, queue, "unknown (the CLI did not answer in time)")
    await asyncio.to_thread(rabbit.restart, node)
    return leader


async def test_killing_the_leader_then_the_receivers_node_loses_nothing(
    rabbit: RabbitCluster, rabbit_services: Services, receiver_port: int, standard_targets, prefix: str,
    redis_client: aioredis.Redis, session: aiohttp.ClientSession,
) -> None:
    # Declared first from a connection to node 1, so the queue's leader starts there (quorum queues are
    # led by the declaring client's node); asked of the cluster below when its CLI answers in time.
    async with amqp_connection(rabbit.nodes[0].url, "test") as connection:
        await Topology(prefix, f"{prefix}.analytics", len(rabbit.nodes)).declare(await connection.channel())
    receiver = await _start_services(rabbit_services, receiver_port)
    queue = f"{prefix}.deliveries"
    members = await asyncio.to_thread(rabbit.queue_members, queue)
    assert sorted(members) == sorted(n.node for n in rabbit.nodes), "one quorum member per node"
    targets: list[Target] = await standard_targets(4)
    ledger = Ledger("cluster_rabbitmq_node_killed")
    sender = StandardSender(session, ledger, targets)
    async with Stream(sender, targets, "rabbit") as stream:
        await until(lambda: ledger.accepted >= QUIET_EVENTS, 60, "first events accepted")
        leader = rabbit.by_node(await asyncio.to_thread(rabbit.queue_leader, queue, rabbit.nodes[0].node))
        new_leader = await _kill_and_recover(rabbit, leader, queue, ledger)
        assert receiver.proc is not None
        receivers_node = rabbit.connected_to(receiver.proc.pid)[0]
        # The receiver's node is made the queue's leader before it is killed: the receiver then reconnects
        # to a node that may not yet know the leader is gone (the case a stale channel used to stall).
        moved_to = await asyncio.to_thread(rabbit.move_leader, queue, receivers_node)
        await _kill_and_recover(rabbit, receivers_node, queue, ledger)
        accepted = ledger.accepted
        await until(lambda: ledger.accepted >= accepted + QUIET_EVENTS, 60, "accepting with every node back")
        await stream.stop()
    # Every member back in step before the next test uses the cluster.
    await asyncio.to_thread(rabbit.wait_members_online, queue)

    retries = await sender.retry_refused(rounds=40)
    stored = await wait_stored(redis_client, prefix, targets, len(ledger.accepted_events), timeout_s=120)
    await asyncio.sleep(1)  # anything wrongly counted twice has time to land
    ledger.extra.update(
        killed=[leader.node, receivers_node.node], leader_after_first_kill=new_leader,
        leader_at_second_kill=moved_to,
        refused_503=ledger.statuses[503], retries_after_recovery=retries,
    )
    figures = await ledger.reconcile(redis_client, prefix, targets)
    ledger.write(COMMAND)
    print(ledger.summary())
    assert new_leader != leader.node, "the killed node cannot lead"
    assert moved_to == receivers_node.node, "the receiver's node led the queue when it was killed"
    assert stored >= len(ledger.accepted_events)
    assert set(ledger.statuses) <= {202, 503}, ledger.summary()
    assert figures["unanswered"] == 0, ledger.summary()
    assert not ledger.refused_events, f"events never accepted after recovery: {ledger.summary()}"
    ledger.assert_clean()


async def test_a_node_cut_off_then_healed_loses_nothing(
    rabbit: RabbitCluster, rabbit_services: Services, receiver_port: int, standard_targets, prefix: str,
    redis_client: aioredis.Redis, session: aiohttp.ClientSession,
) -> None:
    """The node leading the deliveries queue stops answering anyone (SIGSTOP: its peers and clients
    hear nothing, as in a network partition), the others elect a new leader and go on; then it answers
    again (SIGCONT), the majority's side restarts it (autoheal) and it catches up. AMQP heartbeats of
    5 s let a client on the silent node move on."""
    async with amqp_connection(rabbit.nodes[0].url, "test") as connection:
        await Topology(prefix, f"{prefix}.analytics", len(rabbit.nodes)).declare(await connection.channel())
    urls = ",".join(f"{url}?heartbeat=5" for url in rabbit.urls)
    receiver = rabbit_services.make("receiver", PUBLISH_TIMEOUT_S="3", AMQP_URLS=urls)
    receiver.port = receiver_port
    await receiver.start(timeout_s=60)
    await rabbit_services.make("verifier", AMQP_URLS=urls).start(timeout_s=60)
    queue = f"{prefix}.deliveries"
    targets: list[Target] = await standard_targets(4)
    ledger = Ledger("cluster_rabbitmq_node_partitioned")
    sender = StandardSender(session, ledger, targets)
    # The cut-off node is one of three: the other two are a majority only with both their members online
    # (a node restarted by an earlier test may still be catching up).
    await asyncio.to_thread(rabbit.wait_members_online, queue)
    silent = rabbit.by_node(await asyncio.to_thread(rabbit.queue_leader, queue, rabbit.nodes[0].node))
    async with Stream(sender, targets, "partition") as stream:
        await until(lambda: ledger.accepted >= QUIET_EVENTS, 60, "first events accepted")
        silent.pause()
        try:
            accepted = ledger.accepted
            try:
                await until(lambda: ledger.accepted >= accepted + QUIET_EVENTS, 120, f"accepting without {silent.node}")
            except AssertionError as exc:  # say what each side saw (a stuck publishing channel, once)
                raise AssertionError(f"{exc}\n{ledger.summary()}\nreceiver log (last lines):\n"
                                     f"{receiver.logs()[-4000:]}") from None
        finally:
            silent.resume()
        accepted = ledger.accepted
        await until(lambda: ledger.accepted >= accepted + QUIET_EVENTS, 120, "accepting after the healing")
        await until(lambda: stream.sent >= EVENTS, 60, f"{EVENTS} events sent")
        await stream.stop()
    retries = await sender.retry_refused(rounds=40)
    stored = await wait_stored(redis_client, prefix, targets, len(ledger.accepted_events), timeout_s=120)
    await asyncio.sleep(1)
    ledger.extra.update(partitioned=silent.node, refused_503=ledger.statuses[503], retries_after_recovery=retries)
    figures = await ledger.reconcile(redis_client, prefix, targets)
    ledger.write(f"{COMMAND} -k cut_off")
    print(ledger.summary())
    assert stored >= len(ledger.accepted_events)
    assert set(ledger.statuses) <= {202, 503}, ledger.summary()
    assert figures["unanswered"] == 0, ledger.summary()
    assert not ledger.refused_events, ledger.summary()
    ledger.assert_clean()


async def test_the_notifiers_queues_have_a_member_on_every_node(rabbit: RabbitCluster, prefix: str) -> None:
    """With every node in ``AMQP_URLS``, the notifier declares each of its quorum queues with a member on
    each node, as the deliveries queue (so losing a node loses no notification either); with
    ``QUORUM_GROUP_SIZE`` set, with that many (the broker's own default would be every node)."""
    every = NotifyTopology.of(NotifierSettings.from_env(
        amqp_urls=tuple(rabbit.urls), amqp_prefix=f"{prefix}a", notifier_retry_delays_s="5,30"))
    two = NotifyTopology.of(NotifierSettings.from_env(
        amqp_urls=tuple(rabbit.urls), amqp_prefix=f"{prefix}b", notifier_retry_delays_s="5,30", quorum_group_size=2))
    assert (every.group_size, two.group_size) == (len(rabbit.nodes), 2)
    async with amqp_connection(rabbit.urls, "test") as connection:
        try:
            for topology in (every, two):
                await topology.declare(await connection.channel())
            members = await asyncio.to_thread(rabbit.queue_members_all, prefix)
        finally:
            for name in (*every.queues, *two.queues):
                channel = await connection.channel()
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.queue_delete(name)
    every_node = sorted(n.node for n in rabbit.nodes)
    assert {name: sorted(members.get(name, [])) for name in every.queues} == {name: every_node for name in every.queues}
    assert {name: len(members.get(name, [])) for name in two.queues} == {name: 2 for name in two.queues}
