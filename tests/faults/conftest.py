"""Fixtures of the fault suite: fault proxies in front of the real servers, the services as
subprocesses on the test's prefixes, and connections to send to."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
import redis.asyncio as aioredis

from services.status_api.config import Settings as StatusSettings
from services.status_api.connections import Connections, NewConnection
from shared.store import Store
from tests.faults.harness import Services, service_env
from tests.faults.ledger import Target
from tests.faults.proxy import FaultProxy
from tests.system import free_port


def _proxy_for(url: str, default_port: int) -> FaultProxy:
    parts = urlsplit(url)
    return FaultProxy(parts.hostname or "127.0.0.1", parts.port or default_port)


@pytest.fixture
async def amqp_proxy(amqp_url: str) -> AsyncIterator[FaultProxy]:
    async with _proxy_for(amqp_url, 5672) as proxy:
        yield proxy


@pytest.fixture
async def redis_proxy(redis_url: str) -> AsyncIterator[FaultProxy]:
    async with _proxy_for(redis_url, 6379) as proxy:
        yield proxy


@pytest.fixture
def receiver_port() -> int:
    return free_port()


@pytest.fixture
def services(
    amqp_url: str, redis_url: str, prefix: str, tmp_path: Path, receiver_port: int,
    redis_client: aioredis.Redis, amqp_cleanup: None,
) -> Iterator[Services]:
    """Services on the real servers by default; a test points one at a proxy with env overrides.
    Every process is killed at the end, whatever happened."""
    env = service_env(prefix, amqp_url, redis_url, PUBLIC_BASE_URL=f"http://127.0.0.1:{receiver_port}")
    running = Services(env, tmp_path)
    try:
        yield running
    finally:
        running.stop_all()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # Idle connections are let go well before the receiver's own idle timeout (15 s): with both at
    # 15 s, a request sent on a connection the receiver is closing at that moment gets no answer,
    # the client's race, not the receiver's (seen once in a cluster test as ServerDisconnectedError).
    connector = aiohttp.TCPConnector(limit=64, keepalive_timeout=5)
    async with aiohttp.ClientSession(connector=connector) as s:
        yield s


@pytest.fixture
def make_targets(redis_client: aioredis.Redis, prefix: str, receiver_port: int):  # type: ignore[no-untyped-def]
    """Create connections with the status API's own rules (in this process, on the real Redis)."""

    async def make(n: int, account_id: str = "acct-faults") -> list[Target]:
        settings = StatusSettings.from_env(
            redis_prefix=prefix, public_base_url=f"http://127.0.0.1:{receiver_port}"
        )
        connections = Connections(Store(redis_client, prefix), settings)
        made = []
        for _ in range(n):
            view = await connections.create(
                NewConnection(account_id, "generic-hmac-sha256", 600, None, None)
            )
            made.append(Target(view["id"], view["webhook_url"], view["secret"]))
        return made

    return make
