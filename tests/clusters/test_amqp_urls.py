"""Several broker addresses (``AMQP_URLS``): settings, connecting to any live one, moving on when the
one in use goes away. On the machine's own broker behind two fault proxies (two "nodes")."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aio_pika
import pytest

from shared.broker import RotatingConnection, Topology, amqp_connection
from shared.config import CommonSettings
from shared.errors import BrokerUnavailable, ConfigError
from tests.faults.proxy import FaultProxy


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"amqp://guest:guest@127.0.0.1:{port}/"


def test_amqp_urls_replace_amqp_url_and_size_the_quorum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQP_URL", "amqp://guest:guest@one:5672/")
    assert CommonSettings.from_env().amqp_addresses == ("amqp://guest:guest@one:5672/",)
    assert CommonSettings.from_env().quorum_members == 0  # one broker: its own default
    monkeypatch.setenv("AMQP_URLS", "amqp://a:5672/, amqp://b:5672/,amqp://c:5672/")
    settings = CommonSettings.from_env()
    assert settings.amqp_addresses == ("amqp://a:5672/", "amqp://b:5672/", "amqp://c:5672/")
    assert settings.quorum_members == 3
    monkeypatch.setenv("QUORUM_GROUP_SIZE", "5")
    assert CommonSettings.from_env().quorum_members == 5
    assert "a:5672" not in repr(settings)  # addresses may carry passwords
    monkeypatch.setenv("AMQP_URLS", "amqp://a:5672/,http://b/")
    with pytest.raises(ConfigError, match="AMQP_URLS"):
        CommonSettings.from_env()


def test_the_quorum_group_size_is_declared_only_when_set() -> None:
    assert "x-quorum-initial-group-size" not in Topology("p").quorum_arguments()
    assert Topology("p", group_size=3).quorum_arguments(x=1) == {
        "x-queue-type": "quorum", "x-quorum-initial-group-size": 3, "x": 1}


async def test_connects_to_a_live_address_whichever_is_first(amqp_url: str) -> None:
    for _ in range(4):  # the first address tried is random
        async with amqp_connection([_dead_url(), amqp_url], "test") as connection:
            assert isinstance(connection, RotatingConnection)
            assert connection.url.port == (aio_pika.connection.URL(amqp_url).port or 5672)
    with pytest.raises(BrokerUnavailable):
        async with amqp_connection([_dead_url(), _dead_url()], "test"):
            pass


async def test_the_first_attempt_goes_to_the_starting_address(amqp_url: str) -> None:
    """A connection told to start at one address tries that one first (a random start spreads the
    services over the nodes only if the start is where they go); later attempts move on."""
    live = aio_pika.connection.URL(amqp_url)
    for start in range(3):
        urls = [aio_pika.connection.URL(_dead_url()) for _ in range(3)]
        urls[start] = live
        connection = RotatingConnection(urls, start, reconnect_interval="1")
        try:
            await connection.connect(timeout=5)  # fails fast if the first attempt went elsewhere
            assert connection.url == live
        finally:
            await connection.close()


@pytest.fixture
async def two_nodes(amqp_url: str) -> AsyncIterator[tuple[FaultProxy, FaultProxy]]:
    host, port = "127.0.0.1", aio_pika.connection.URL(amqp_url).port or 5672
    async with FaultProxy(host, port) as a, FaultProxy(host, port) as b:
        yield a, b


# aiormq leaves the reset socket's StreamWriter to the garbage collector (a ResourceWarning, not ours).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_losing_the_node_in_use_moves_to_another(amqp_url: str, two_nodes: tuple[FaultProxy, FaultProxy],
                                                      prefix: str) -> None:
    a, b = two_nodes
    proxies = {a.port: a, b.port: b}
    async with amqp_connection([a.url(amqp_url), b.url(amqp_url)], "test") as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{prefix}.urls", auto_delete=True)
        in_use = proxies[connection.url.port]
        in_use.cut()  # that "node" is gone and stays gone
        reconnected = asyncio.Event()
        connection.reconnect_callbacks.add(lambda *_: reconnected.set())
        await asyncio.wait_for(reconnected.wait(), 20)
        assert connection.url.port != in_use.port
        await channel.default_exchange.publish(aio_pika.Message(b"after"), routing_key=queue.name)
        message = await queue.get(timeout=5)
        await message.ack()
        assert message.body == b"after"
