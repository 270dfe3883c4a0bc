"""Fixtures of the cluster tests: a RabbitMQ cluster and a Redis Cluster with replicas, each started by
the tests on this machine (beside its own RabbitMQ and Redis, which they never touch) and stopped and
removed afterwards; the services as subprocesses pointed at them."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import pytest
import redis.asyncio as aioredis

from services.status_api.config import Settings as StatusSettings
from services.status_api.connections import Connections, NewConnection
from shared.redis import RedisClient, make_redis
from shared.store import Store
from tests.clusters import rabbitmq, redis_cluster
from tests.faults.conftest import receiver_port, session  # noqa: F401  (fixtures, shared)
from tests.faults.harness import Services, service_env
from tests.faults.ledger import Target


@pytest.fixture(scope="session")
def rabbit() -> Iterator[rabbitmq.RabbitCluster]:
    """Three clustered RabbitMQ nodes, for every test of the session that asks (booting takes a while)."""
    reason = rabbitmq.available()
    if reason:
        pytest.skip(f"no local RabbitMQ cluster: {reason}")
    workdir = Path(tempfile.mkdtemp(prefix="hookstatus-rabbit-"))
    os.chmod(workdir, 0o755)  # the nodes run as the rabbitmq user
    with rabbitmq.rabbit_cluster(workdir) as cluster:
        yield cluster


@pytest.fixture
async def rabbit_cleanup(rabbit: rabbitmq.RabbitCluster, prefix: str) -> AsyncIterator[None]:
    """Every node running again and the cluster whole after the test, and the test's queues and
    exchanges deleted."""
    yield
    for node in rabbit.nodes:
        node.signal_safe_resume()
        if not node.running:
            rabbit.restart(node)
    await asyncio.to_thread(rabbit.wait_whole)
    connection = await aio_pika.connect(rabbit.nodes[0].url)
    async with connection:
        for name in (f"{prefix}.deliveries", f"{prefix}.deliveries.dead"):
            channel = await connection.channel()
            try:
                await channel.queue_delete(name)
            except aio_pika.exceptions.AMQPError:
                pass
        for name in (f"{prefix}.deliveries", f"{prefix}.dead", f"{prefix}.analytics"):
            channel = await connection.channel()
            try:
                await channel.exchange_delete(name)
            except aio_pika.exceptions.AMQPError:
                pass


@pytest.fixture
def rabbit_services(
    rabbit: rabbitmq.RabbitCluster, redis_url: str, prefix: str, tmp_path: Path, receiver_port: int,  # noqa: F811
    redis_client: aioredis.Redis, rabbit_cleanup: None,
) -> Iterator[Services]:
    """Services on the RabbitMQ cluster (every node in AMQP_URLS) and the machine's Redis."""
    env = service_env(prefix, rabbit.urls[0], redis_url, AMQP_URLS=",".join(rabbit.urls),
                      PUBLIC_BASE_URL=f"http://127.0.0.1:{receiver_port}")
    running = Services(env, tmp_path)
    try:
        yield running
    finally:
        running.stop_all()


@pytest.fixture
def standard_targets(redis_client: aioredis.Redis, prefix: str, receiver_port: int):  # type: ignore[no-untyped-def]  # noqa: F811
    """Create Standard Webhooks connections with the status API's own rules, on ``redis_client``."""

    async def make(n: int, client: aioredis.Redis | None = None) -> list[Target]:
        settings = StatusSettings.from_env(redis_prefix=prefix, public_base_url=f"http://127.0.0.1:{receiver_port}")
        connections = Connections(Store(client or redis_client, prefix), settings)
        made = []
        for _ in range(n):
            view = await connections.create(NewConnection("acct-clusters", "standard-webhooks", 600, None, None))
            made.append(Target(view["id"], view["webhook_url"], view["secret"]))
        return made

    return make


@pytest.fixture(scope="session")
def redis_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis_cluster.RedisClusterNodes]:
    """A Redis Cluster of three primaries with one replica each, for the session's cluster tests."""
    reason = redis_cluster.available()
    if reason:
        pytest.skip(reason)
    with redis_cluster.redis_cluster(tmp_path_factory.mktemp("redis-cluster-replicas")) as cluster:
        yield cluster


@pytest.fixture
async def redis_nodes_ready(redis_nodes: redis_cluster.RedisClusterNodes) -> AsyncIterator[None]:
    """Every node running and in sync before and after the test (a test may kill some)."""
    await asyncio.to_thread(redis_nodes.heal)
    yield
    await asyncio.to_thread(redis_nodes.heal)


@pytest.fixture
async def cluster_client(redis_nodes: redis_cluster.RedisClusterNodes, redis_nodes_ready: None,
                         prefix: str) -> AsyncIterator[RedisClient]:
    client = make_redis(redis_nodes.url)
    yield client
    await client.aclose()
    await asyncio.to_thread(redis_nodes.heal)
    cleaner = make_redis(redis_nodes.url)  # the test may have killed a node the first client knew
    try:
        for node in cleaner.get_primaries():  # type: ignore[attr-defined]
            keys = [k async for k in cleaner.scan_iter(match=f"{prefix}:*", count=1000, target_nodes=node)]  # type: ignore[call-arg]
            for key in keys:
                await cleaner.delete(key)
    finally:
        await cleaner.aclose()


@pytest.fixture
def redis_services(  # type: ignore[no-untyped-def]
    redis_nodes: redis_cluster.RedisClusterNodes, amqp_url: str, prefix: str, tmp_path,
    receiver_port: int, amqp_cleanup: None,  # noqa: F811
):
    """Services on the Redis Cluster and the machine's RabbitMQ."""
    env = service_env(prefix, amqp_url, redis_nodes.url, PUBLIC_BASE_URL=f"http://127.0.0.1:{receiver_port}")
    running = Services(env, tmp_path)
    try:
        yield running
    finally:
        running.stop_all()
