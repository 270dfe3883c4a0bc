"""RabbitMQ access: the topology, the confirmed publisher, and the analytics publisher.

Topology (``P`` = ``AMQP_PREFIX``):

    P.deliveries (direct exchange) --delivery--> P.deliveries (quorum queue, durable)
                                                    | rejected / over x-delivery-limit
                                                    v
    P.dead (fanout exchange) ------------------> P.deliveries.dead (quorum queue)
    analytics (topic exchange; routing key = event name)

With several broker addresses (``AMQP_URLS``, the nodes of one RabbitMQ cluster) a connection starts at a
random node (so services spread over the cluster) and each reconnection attempt moves on to the next
address, so losing the node a service is connected to moves it to a live one. The quorum queues are
declared with ``x-quorum-initial-group-size`` = ``QUORUM_GROUP_SIZE`` (default: the number of addresses).

aio-pika and aiormq errors that mean the broker is unreachable (``is_unreachable``) leave this module as
``BrokerUnavailable``; any other error (a bug) leaves it as itself.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import aio_pika
import aiormq
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractRobustConnection
from aio_pika.robust_connection import RobustConnection
from aiormq import spec
from pamqp.commands import Basic
from yarl import URL

from shared.amqp_writes import TurnWrites
from shared.deadlines import Deadlines
from shared.errors import BrokerUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

ROUTING_KEY = "delivery"
# AMQP heartbeats: aiormq calls a connection stuck (and drops it, so the robust connection reconnects)
# after (heartbeat + 1) * 3 seconds without a frame. The server's usual 60 s would leave a blackholed
# socket (a broker or network that hangs rather than resets) undetected for three minutes.
HEARTBEAT_S = 5
RECONNECT_INTERVAL_S = 1.0  # between attempts (aio-pika's default is 5 s): a cluster fails over in seconds
CONNECT_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 5.0
PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)
DELIVERY_LIMIT = 20  # a message returned this often goes to the dead-letter queue: it never loops
# The classes that always mean the broker is not reachable (or the channel we used is gone).
AMQP_ERRORS: tuple[type[Exception], ...] = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    TimeoutError,
)
# aiormq and aio-pika report a connection that just dropped with a bare RuntimeError; these are their
# messages ("<Connection: ...> closed", "... connection closed", "Connection was not opened", ...).
_CLOSED_CONNECTION = re.compile(r"^<.*> closed$|connection closed$|^Connection (?:was not opened|is not ready)$|"
                                r"No active transport for connection")


def is_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` means RabbitMQ cannot be reached right now (retry later), not a bug."""
    if isinstance(exc, AMQP_ERRORS):
        return True
    return type(exc) is RuntimeError and bool(_CLOSED_CONNECTION.search(str(exc)))


async def open_channel(
    connection: AbstractConnection, channel: AbstractChannel | None, **options: Any
) -> AbstractChannel:
    """``channel`` while it is open, else a new channel on ``connection``."""
    if channel is not None and not channel.is_closed:
        return channel
    return await connection.channel(**options)


def quorum_arguments(group_size: int, **more: Any) -> dict[str, Any]:
    """A quorum queue's declare arguments: ``more``, and ``x-quorum-initial-group-size`` when
    ``group_size`` is set (``QUORUM_GROUP_SIZE``, or the number of ``AMQP_URLS``)."""
    arguments: dict[str, Any] = {"x-queue-type": "quorum", **more}
    if group_size:
        arguments["x-quorum-initial-group-size"] = group_size
    return arguments


@dataclass(frozen=True, slots=True)
class Topology:
    prefix: str
    analytics: str = "analytics"
    group_size: int = 0  # quorum queue members; 0 = the broker's default (every node of a small cluster)

    def quorum_arguments(self, **more: Any) -> dict[str, Any]:
        return quorum_arguments(self.group_size, **more)

    @property
    def exchange(self) -> str:
        return f"{self.prefix}.deliveries"

    @property
    def queue(self) -> str:
        return f"{self.prefix}.deliveries"

    @property
    def dead_exchange(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def dead_queue(self) -> str:
        return f"{self.prefix}.deliveries.dead"

    async def declare(self, channel: AbstractChannel) -> AbstractExchange:
        """Declare everything (idempotent) and return the deliveries exchange."""
        dead = await channel.declare_exchange(self.dead_exchange, aio_pika.ExchangeType.FANOUT, durable=True)
        dead_q = await channel.declare_queue(
            self.dead_queue, durable=True, arguments=self.quorum_arguments()
        )
        await dead_q.bind(dead, routing_key="")
        exchange = await channel.declare_exchange(self.exchange, aio_pika.ExchangeType.DIRECT, durable=True)
        queue = await channel.declare_queue(
            self.queue,
            durable=True,
            arguments=self.quorum_arguments(
                **{"x-dead-letter-exchange": self.dead_exchange, "x-delivery-limit": DELIVERY_LIMIT}
            ),
        )
        await queue.bind(exchange, routing_key=ROUTING_KEY)
        await channel.declare_exchange(self.analytics, aio_pika.ExchangeType.TOPIC, durable=True)
        return exchange


class TurnWritesConnection(RobustConnection):
    """aio-pika's robust connection whose frames of one loop turn go out in one write
    (``shared/amqp_writes.py``), on every (re)connection."""

    def __init__(self, url: URL, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.writes = TurnWrites()
        self.kwargs["transport_factory"] = self.writes  # passed on to aiormq's connection


class RotatingConnection(TurnWritesConnection):
    """A robust connection over several addresses of one cluster: every reconnection attempt goes to
    the next address. (aio-pika clears ``transport`` at the start of each attempt and then connects to
    ``url``; that is where the address moves on.)"""

    def __init__(self, urls: Sequence[URL], start: int, **kwargs: Any) -> None:
        self._urls = list(urls)
        self._index = start % len(self._urls)
        super().__init__(self._urls[self._index], **kwargs)
        self._attempted = False  # the first attempt (aio-pika's first clearing of transport) stays at ``start``

    @property
    def transport(self) -> Any:
        return self.__dict__.get("_transport")

    @transport.setter
    def transport(self, value: Any) -> None:
        if value is None and getattr(self, "_attempted", False) and not self._close_called:
            self._index = (self._index + 1) % len(self._urls)
            self.url = self._urls[self._index]
        elif value is None and hasattr(self, "_urls"):
            self._attempted = True
        self.__dict__["_transport"] = value


def connection_url(url: str) -> URL:
    """``url`` with our heartbeat and reconnect interval, unless it sets its own."""
    parsed = URL(url)
    defaults = {"heartbeat": str(HEARTBEAT_S), "reconnect_interval": str(RECONNECT_INTERVAL_S)}
    missing = {key: value for key, value in defaults.items() if key not in parsed.query}
    return parsed.update_query(missing) if missing else parsed


async def _connect(urls: Sequence[str], name: str) -> AbstractRobustConnection:
    """One address: aio-pika's robust connection. Several: connect to the first that answers, starting
    at a random one; the connection then moves on by itself (``RotatingConnection``). Each attempt is
    bounded (``asyncio.timeout`` around aio-pika's own connect timeout, which does not cover everything
    it awaits)."""
    if len(urls) == 1:
        async with asyncio.timeout(CONNECT_TIMEOUT_S + 1):
            return await aio_pika.connect_robust(
                connection_url(urls[0]), client_properties={"connection_name": name}, timeout=CONNECT_TIMEOUT_S,
                connection_class=TurnWritesConnection,
            )
    parsed = [connection_url(u).update_query(name=name) for u in urls]  # the name the broker shows for it
    start = random.randrange(len(parsed))
    error: Exception | None = None
    for offset in range(len(parsed)):
        connection = RotatingConnection(parsed, start + offset, reconnect_interval=str(RECONNECT_INTERVAL_S))
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S + 1):
                await connection.connect(timeout=CONNECT_TIMEOUT_S)
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            await close_quietly(connection)
            error = exc
            continue
        return connection
    assert error is not None
    raise error


@asynccontextmanager
async def amqp_connection(urls: str | Sequence[str], name: str) -> AsyncIterator[AbstractRobustConnection]:
    """A robust connection (reconnects by itself, moving over the addresses) that is closed on exit;
    closing is bounded too, since a close handshake on a blackholed socket is never answered."""
    try:
        connection = await _connect([urls] if isinstance(urls, str) else urls, name)
    except Exception as exc:
        if is_unreachable(exc):
            raise BrokerUnavailable(f"RabbitMQ is not reachable: {type(exc).__name__}") from exc
        raise
    try:
        yield connection
    finally:
        await close_quietly(connection)


async def close_quietly(connection: AbstractConnection) -> None:
    """Close ``connection`` within ``CLOSE_TIMEOUT_S``; a broker that is away cannot refuse a close."""
    try:
        await asyncio.wait_for(connection.close(), CLOSE_TIMEOUT_S)
    except Exception as exc:
        if not is_unreachable(exc):
            raise
        log.warning("amqp connection not closed cleanly", extra={"error": type(exc).__name__})


class ConfirmChannel(Generic[T]):
    """The one confirming channel a publisher publishes on, opened (and the topology declared on it by
    ``declare``, whose result it keeps beside it) when first needed.

    A channel on which the broker did not take a message (a Nack, or a message returned unroutable) is
    retired: the next publish opens a fresh one and declares again. That is not only tidiness: on a
    RabbitMQ cluster, a channel that first published to a quorum queue while its node still believed a
    just-killed node led that queue keeps getting every publish Nacked, long after a new leader was
    elected, while a fresh channel on the same connection is confirmed at once. A robust connection
    that reconnects to a surviving node within milliseconds of losing the leader's node restores its
    channels in exactly that window. Such a channel does not always Nack at once: seen on a node that
    had been cut off and came back, it answered each publish with a Nack seconds after the publisher's
    deadline had passed (and the request was answered 503), so no Nack ever reached ``publish_on`` and
    the channel was never replaced. A publish given up on before its answer (its deadline passed, or the
    service is stopping) therefore retires its channel too."""

    def __init__(self, connection: AbstractConnection, declare: Callable[[AbstractChannel], Awaitable[T]]) -> None:
        self._connection = connection
        self._declare = declare
        self._open: tuple[AbstractChannel, T] | None = None
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    def current(self) -> tuple[AbstractChannel, T] | None:
        """The open channel and what its declare returned, without awaiting anything; None when a
        publish has to open one first."""
        if self._open is None or self._open[0].is_closed:
            return None
        return self._open

    async def get(self) -> tuple[AbstractChannel, T]:
        """The open channel, else a new confirming channel with the topology declared on it."""
        ready = self.current()
        if ready is not None:
            return ready
        async with self._lock:
            ready = self.current()
            if ready is None:
                channel = await open_channel(self._connection, None, publisher_confirms=True)
                ready = self._open = (channel, await self._declare(channel))
            return ready

    async def publish_on(self, channel: AbstractChannel, publishing: Awaitable[object]) -> object:
        """Await ``publishing`` (a publish on ``channel``); a Nack, a returned message or a publish given
        up on before the broker answered (cancelled: its deadline passed) retires it."""
        try:
            confirm = await publishing
        except aiormq.exceptions.DeliveryError:
            self.retire(channel, "not taken")
            raise
        except asyncio.CancelledError:  # given up on (``confirmed``'s deadline), or the connection closed
            self.retire(channel, "no answer in time" if _cancelling() else "closed")
            raise
        if not isinstance(confirm, Basic.Ack):
            self.retire(channel, "not taken")
        return confirm

    def retire(self, channel: AbstractChannel, why: str = "not taken") -> None:
        """Stop publishing on ``channel`` (if it is still the current one) and close it in the background;
        publishes still waiting on it are answered by the close (unreachable: refused, not lost)."""
        if self._open is None or self._open[0] is not channel:
            return
        self._open = None
        log.warning("amqp publishing channel retired", extra={"why": why})
        task = asyncio.get_running_loop().create_task(_close_channel(channel))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        if self._open is not None:
            channel, self._open = self._open[0], None
            await _close_channel(channel)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


async def _close_channel(channel: AbstractChannel) -> None:
    if channel.is_closed:
        return
    try:
        await asyncio.wait_for(channel.close(), CLOSE_TIMEOUT_S)
    except Exception as exc:
        if not is_unreachable(exc):
            raise


class ConfirmedPublisher:
    """Publishes persistent messages and returns only once the broker confirmed them.

    It publishes on the channel's own AMQP layer (aiormq) and does not wait for each frame to be
    written before the next publish may go: only the broker's confirm is awaited, as before. (aio-pika's
    ``Exchange.publish`` holds the channel's lock until the writer task has written the frame, so every
    publish paid several event-loop turns and a ``Message`` object; this halves the CPU per publish.)

    It also knows how many publishes wait for their confirm and since when the oldest waits
    (``unconfirmed``, ``oldest_wait_s``): what the receiver sheds load on. Its channel is a
    ``ConfirmChannel``: one the broker Nacked a publish on is replaced.
    """

    def __init__(self, connection: AbstractRobustConnection, topology: Topology, timeout_s: float) -> None:
        self._connection = connection
        self._channel: ConfirmChannel[AbstractExchange] = ConfirmChannel(connection, topology.declare)
        self._timeout_s = timeout_s
        self._deadlines = Deadlines(timeout_s)
        self._waiting: OrderedDict[int, float] = OrderedDict()  # publish ticket -> when it began
        self._tickets = itertools.count()

    @property
    def unconfirmed(self) -> int:
        """Publishes sent (or about to be) whose confirm has not come back yet."""
        return len(self._waiting)

    def oldest_wait_s(self, now: float) -> float:
        """How long the oldest unconfirmed publish has been waiting (0 when none waits)."""
        for began in self._waiting.values():
            return now - began
        return 0.0

    async def ready(self) -> bool:
        """True when a confirming channel to the broker is open (opening one if needed)."""
        if self._connection.is_closed:
            return False
        try:
            await asyncio.wait_for(self._channel.get(), self._timeout_s)
        except Exception as exc:
            if is_unreachable(exc):
                return False
            raise
        return True

    async def publish(self, body: bytes, *, message_id: str, headers: dict[str, Any] | None = None) -> None:
        ticket = next(self._tickets)
        self._waiting[ticket] = time.monotonic()
        try:
            await confirmed(self._publish(body, message_id, headers), self._deadlines)
        finally:
            del self._waiting[ticket]

    async def _publish(self, body: bytes, message_id: str, headers: dict[str, Any] | None) -> object:
        # An open channel skips the set-up path entirely.
        channel, exchange = self._channel.current() or await self._channel.get()
        # aiormq's own channel: its basic_publish takes ``wait`` (the abstract one does not say so).
        underlay = cast(aiormq.Channel, await channel.get_underlay_channel())
        properties = spec.Basic.Properties(delivery_mode=PERSISTENT, content_type="application/json",
                                           message_id=message_id, headers=headers or {})
        return await self._channel.publish_on(channel, underlay.basic_publish(
            body, exchange=exchange.name, routing_key=ROUTING_KEY, properties=properties, mandatory=True,
            wait=False))


def persistent_message(body: bytes, message_id: str, headers: dict[str, Any] | None = None) -> aio_pika.Message:
    return aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, content_type="application/json",
                            message_id=message_id, headers=headers or {})


def _cancelling() -> bool:
    """True when the running task itself is being cancelled (not merely handed a CancelledError)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def confirmed(publishing: Awaitable[object], deadlines: Deadlines) -> None:
    """Await a publish (and whatever set-up it needs) under one deadline (``deadlines``: the publisher's,
    a timer for all its publishes instead of one each), cheaper per message than wait_for's task and
    aio-pika's per-step countdowns. Only the broker's Ack counts: an unreachable broker, a deadline
    passed or a Nack/Reject is ``BrokerUnavailable``."""
    try:
        confirm = await deadlines.run(publishing)
    except asyncio.CancelledError:
        if _cancelling():  # this task is being cancelled (shutting down): so be it
            raise
        # aiormq answers the confirms still awaited on a connection that closes (its node restarted,
        # say) with CancelledError: a refusal to retry, not the end of the request's task (which
        # would leave its client with no answer at all).
        raise BrokerUnavailable("the broker did not confirm: the connection closed") from None
    except Exception as exc:
        if is_unreachable(exc):
            raise BrokerUnavailable(f"the broker did not confirm: {type(exc).__name__}") from exc
        raise
    if not isinstance(confirm, Basic.Ack):
        raise BrokerUnavailable(f"the broker refused the message: {type(confirm).__name__}")
