"""Fixtures on the real RabbitMQ and Redis.

``AMQP_URL`` / ``REDIS_URL`` (default: the local servers) are used when reachable; otherwise the
servers are started in containers with testcontainers. Every test gets its own Redis key prefix and
its own RabbitMQ queue and exchange names, and removes them afterwards.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import aio_pika
import pytest
import redis.asyncio as aioredis

from shared.config import DEFAULT_AMQP_URL, DEFAULT_REDIS_URL
from tests.system import System, SystemWith, start_system


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), 2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if _reachable(url, 6379):
        yield url
        return
    from testcontainers.redis import RedisContainer

    with RedisContainer("redis:7") as container:
        yield f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    url = os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL
    if _reachable(url, 5672):
        yield url
        return
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:3.13") as container:
        host, port = container.get_container_host_ip(), container.get_exposed_port(5672)
        yield f"amqp://guest:guest@{host}:{port}/"


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis_client(redis_url: str, prefix: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def amqp_cleanup(amqp_url: str, prefix: str) -> AsyncIterator[None]:
    """Delete the test's queues and exchanges afterwards."""
    yield
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        for queue in (f"{prefix}.deliveries", f"{prefix}.deliveries.dead"):
            channel = await connection.channel()
            try:
                await channel.queue_delete(queue)
            except aio_pika.exceptions.AMQPError:
                pass
        for exchange in (f"{prefix}.deliveries", f"{prefix}.dead", f"{prefix}.analytics"):
            channel = await connection.channel()
            try:
                await channel.exchange_delete(exchange)
            except aio_pika.exceptions.AMQPError:
                pass


@pytest.fixture
async def system(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None
) -> AsyncIterator[System]:
    """The three services, in this process, on real sockets, the real broker and the real Redis."""
    async with start_system(amqp_url, redis_url, prefix) as running:
        yield running


@pytest.fixture
def system_with(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None
) -> SystemWith:
    """The system with some settings changed, cleaned up like ``system``:
    ``async with system_with(receiver={...}, status_api={...}) as running``."""
    return functools.partial(start_system, amqp_url, redis_url, prefix)
