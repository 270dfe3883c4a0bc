"""Connecting to Redis (one server or a Redis Cluster), and what counts as "Redis is unreachable".

``REDIS_URL`` is ``redis://`` (or ``rediss://``, ``unix://``) for one server, ``redis+cluster://host:port``
(or ``rediss+cluster://``) for a Redis Cluster found from that seed node. Keys are laid out so that each
command and script touches one slot (``shared/keys.py``).

Only errors that mean the server cannot be reached right now are "unreachable" (``is_unreachable``):
a programming error inside a Redis call stays what it is, so it is never mistaken for an outage.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster
from redis.asyncio.connection import SSLConnection

T = TypeVar("T")

# A Redis Cluster client offers the commands the store uses just as a single-node client does; typing
# it as one keeps the rest of the code free of the union (redis-py types cluster replies loosely).
RedisClient = aioredis.Redis
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

# The classes that always mean "not reachable": refused, reset, timed out, or closed under us.
# ``ConnectionError`` and ``TimeoutError`` are the builtin OSError subclasses (a socket error that is
# not one of those, a FileNotFoundError say, is a bug, not an outage).
REDIS_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
    # A Redis Cluster in a failover: no primary for a slot yet (CLUSTERDOWN, MASTERDOWN, TRYAGAIN, a
    # slot no node covers), a write that reached a primary just demoted (READONLY), or a redirect the
    # client could not follow before its retries ran out. Each passes once a replica is promoted.
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.AskError,
)
# Under uvloop, a connection the server (or a network fault) closes while redis-py is still writing its
# handshake surfaces as this RuntimeError rather than as a ConnectionError.
_CLOSED_TRANSPORT = "unable to perform operation on <"


def is_closed_transport(exc: BaseException) -> bool:
    """uvloop's "unable to perform operation on <TCPTransport closed=True ...>": the socket is gone."""
    text = str(exc)
    return type(exc) is RuntimeError and text.startswith(_CLOSED_TRANSPORT) and "closed=True" in text


def is_writer_gone(exc: BaseException) -> bool:
    """redis-py's asyncio connection writing on a connection closed under it (a node restarting or
    failing over drops it while a command is being sent): the writer, or its transport's internals, are
    already ``None``, and the write fails with an ``AttributeError`` or ``TypeError`` about ``NoneType``
    instead of a ``ConnectionError``. Only when that failure comes from redis-py's connection module
    (its innermost frames there or in asyncio's streams), so a bug of ours is never mistaken for it."""
    if type(exc) not in (AttributeError, TypeError) or "'NoneType' object" not in str(exc):
        return False
    frames = [tb.tb_frame.f_code.co_filename for tb in _walk(exc.__traceback__)]
    return bool(frames) and any(f.endswith(_REDIS_CONNECTION) for f in frames) and (
        frames[-1].endswith(_REDIS_CONNECTION) or frames[-1].endswith(_ASYNCIO_TRANSPORT))


_REDIS_CONNECTION = os.path.join("redis", "asyncio", "connection.py")
_ASYNCIO_TRANSPORT = (os.path.join("asyncio", "streams.py"), os.path.join("asyncio", "selector_events.py"))


def _walk(tb: TracebackType | None) -> Iterator[TracebackType]:
    while tb is not None:
        yield tb
        tb = tb.tb_next


def is_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` means Redis cannot be reached right now (retry later), not a bug."""
    return isinstance(exc, REDIS_ERRORS) or is_closed_transport(exc) or is_writer_gone(exc)


def awaited(reply: Awaitable[T] | T) -> Awaitable[T]:
    """redis-py types each command as ``Awaitable[T] | T`` (one signature for the sync and asyncio
    clients); on the asyncio client it is always the awaitable."""
    return cast(Awaitable[T], reply)


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0] in CLUSTER_SCHEMES


def _plain_url(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{CLUSTER_SCHEMES.get(scheme, scheme)}://{rest}"


_SUBSCRIBER_OPTIONS = {"username", "password", "decode_responses", "socket_connect_timeout"}


class _Cluster(RedisCluster):
    """The cluster client, plus ``pubsub()``: classic PUBLISH is broadcast to every node of a cluster,
    so subscribing on any one node hears every change, whichever node published it.

    ``aclose`` stays redis-py's own: besides closing for good, redis-py calls it itself, from any command
    that meets a dead or moved node, to drop its node connections and re-read the slot map. The
    subscriptions are not its to drop then (that cut every live stream at each failover, and two such
    calls at once failed with a 500), so they are closed by ``close_all``, when the client is done with."""

    _subscribers: dict[tuple[str, int], aioredis.Redis]

    def pubsub(self, **kwargs: Any) -> PubSub:
        node = self.get_default_node() or next(iter(self.nodes_manager.startup_nodes.values()))
        if not hasattr(self, "_subscribers"):
            self._subscribers = {}
        address = (str(node.host), int(node.port))
        client = self._subscribers.get(address)
        if client is None:
            options = {k: v for k, v in node.connection_kwargs.items() if k in _SUBSCRIBER_OPTIONS}
            options["ssl"] = issubclass(node.connection_kwargs.get("connection_class", object), SSLConnection)
            client = aioredis.Redis(host=address[0], port=address[1], **options)
            self._subscribers[address] = client
        return client.pubsub(**kwargs)

    async def close_all(self) -> None:
        """Close the subscriber clients too (``aclose`` leaves them: see there), then the nodes."""
        subscribers, self._subscribers = getattr(self, "_subscribers", {}), {}
        for client in subscribers.values():
            await client.aclose()
        await self.aclose()


SOCKET_TIMEOUT_S = 5.0


def make_redis(url: str, socket_timeout: float | None = SOCKET_TIMEOUT_S) -> RedisClient:
    """A client for ``REDIS_URL`` (see the module docstring). ``socket_timeout`` None: no timeout on each
    socket read and write, for a caller that puts one deadline on each whole call instead (redis-py
    runs every write with a timeout as a task of its own, a good part of a one-command call's CPU)."""
    options: dict[str, Any] = {"decode_responses": True, "socket_timeout": socket_timeout,
                               "socket_connect_timeout": 3}
    if is_cluster_url(url):
        cluster: RedisCluster = _Cluster.from_url(_plain_url(url), **options)
        return cast(RedisClient, cluster)
    client: RedisClient = aioredis.Redis.from_url(url, health_check_interval=10, **options)
    return client


def is_cluster(client: RedisClient) -> bool:
    return isinstance(client, RedisCluster)


@asynccontextmanager
async def redis_client(url: str, socket_timeout: float | None = SOCKET_TIMEOUT_S) -> AsyncIterator[RedisClient]:
    client = make_redis(url, socket_timeout)
    try:
        yield client
    finally:
        await (client.close_all() if isinstance(client, _Cluster) else client.aclose())


class NotReplicated(redis.exceptions.ConnectionError):
    """Written on the primary, but fewer replicas than asked confirmed it within the timeout: the write
    may not survive a failover, so it counts as not done (the caller retries; writes are idempotent)."""


async def has_replicas(client: RedisClient) -> bool:
    """True when ``client`` is a Redis Cluster whose every live primary has a live replica (from
    ``CLUSTER NODES``: the client's own slot map may list primaries only)."""
    if not isinstance(client, RedisCluster):
        return False
    nodes: dict[str, dict[str, Any]] = await client.cluster_nodes()
    live = [n for n in nodes.values() if "fail" not in str(n.get("flags", ""))]
    primaries = {n["node_id"] for n in live if "master" in str(n["flags"])}
    served = {n["master_id"] for n in live if "slave" in str(n["flags"])}
    return bool(primaries) and primaries <= served


def _check_acks(acked: object, replicas: int) -> None:
    if not isinstance(acked, int) or acked < replicas:
        raise NotReplicated(f"{acked} of {replicas} replica(s) confirmed the write")


async def run_and_wait(client: RedisClient, calls: list[tuple[str, list[str], list[Any]]],
                       replicas: int, timeout_ms: int) -> list[Any]:
    """Run scripts (``(sha, keys, args)``) by EVALSHA, then ``WAIT replicas timeout_ms`` on the same
    connection (WAIT counts the replicas that have this connection's writes), per node. Returns each
    script's reply or error, in order. Fewer replicas than asked, or a topology in flux, raise an
    unreachable error (``is_unreachable``): nothing counts as stored until a replica has it."""
    if not isinstance(client, RedisCluster):
        async with client.pipeline(transaction=False) as pipe:
            for sha, keys, args in calls:
                pipe.evalsha(sha, len(keys), *keys, *args)
            pipe.execute_command("WAIT", replicas, timeout_ms)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        _check_acks(replies[-1], replicas)
        return replies[:-1]
    by_node: dict[str, tuple[ClusterNode, list[PipelineCommand]]] = {}
    for position, (sha, keys, args) in enumerate(calls):
        node = client.get_node_from_key(keys[0])
        if node is None:
            raise redis.exceptions.SlotNotCoveredError(f"no node for {keys[0]}")
        by_node.setdefault(node.name, (node, []))[1].append(PipelineCommand(position, "EVALSHA", sha, len(keys),
                                                                            *keys, *args))
    try:
        await asyncio.gather(*(_node_batch(node, commands, replicas, timeout_ms)
                               for node, commands in by_node.values()))
    except Exception as exc:
        if is_unreachable(exc) and not isinstance(exc, NotReplicated):
            await client.nodes_manager.initialize()  # learn the new primaries before the retry
        raise
    results: list[Any] = [None] * len(calls)
    for _, commands in by_node.values():
        for command in commands:
            results[command.position] = command.result
    return results


async def _node_batch(node: ClusterNode, commands: list[PipelineCommand], replicas: int, timeout_ms: int) -> None:
    wait = PipelineCommand(-1, "WAIT", replicas, timeout_ms)
    await node.execute_pipeline([*commands, wait])
    for command in commands:
        if isinstance(command.result, Exception) and is_unreachable(command.result):
            raise command.result
    if isinstance(wait.result, Exception):
        raise wait.result
    _check_acks(wait.result, replicas)
