"""AMQP frames written in one turn of the event loop go to the socket as one write.

aiormq's writer task writes every frame it takes from its queue with its own ``write``, and a write
to an idle socket is a system call that, on the broker's side of the connection, is a wake-up and a
read. Under load a receiver process publishes several messages in one turn (one per request it
handles), and the verifier acks in bursts; each was its own system call. ``TurnWriter`` collects what
is written during one turn and hands it to the transport at once, right after the turn (no timer: a
quiet connection's single frame still leaves at once, only after the callbacks already queued).

Nothing is reordered and nothing waits longer than the turn; ``drain`` and ``close`` first hand over
whatever is held, so aiormq's own flow control (a publish that waits for its frame to be written,
the close handshake) behaves as before. It is plugged in through aiormq's ``transport_factory`` (a
documented parameter of its connection), with TLS when the URL is ``amqps``, as aiormq's own
factories do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

from aiormq.connection import TransportFactory
from aiormq.exceptions import AMQPConnectionError
from yarl import URL

# How long a close may wait for the peer to take what is still buffered before the connection is dropped.
CLOSE_WAIT_S = 5.0


class TurnWriter(asyncio.StreamWriter):
    """A stream writer whose writes of one loop turn reach the transport as one write."""

    def __init__(self, transport: asyncio.WriteTransport, protocol: asyncio.StreamReaderProtocol,
                 reader: asyncio.StreamReader, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(transport, protocol, reader, loop)
        self._held: list[bytes] = []
        self._call_soon = loop.call_soon  # (asyncio.get_running_loop() asks the OS for the pid each time)
        self.writes = 0  # chunks written by the caller, and
        self.flushes = 0  # writes handed to the transport (tests, and the curious)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._held:
            self._call_soon(self.flush)
        self._held.append(bytes(data))
        self.writes += 1

    def writelines(self, data: Iterable[bytes | bytearray | memoryview]) -> None:
        for chunk in data:
            self.write(chunk)

    def flush(self) -> None:
        """Hand what is held to the transport now (a closed transport drops it, as it would anyway)."""
        if not self._held:
            return
        held, self._held = self._held, []
        if self.transport.is_closing():
            return
        self.flushes += 1
        self.transport.write(held[0] if len(held) == 1 else b"".join(held))

    async def drain(self) -> None:
        self.flush()
        await super().drain()

    def write_eof(self) -> None:
        self.flush()
        super().write_eof()

    def close(self) -> None:
        self.flush()
        super().close()

    async def wait_closed(self) -> None:
        """Wait for the close, at most ``CLOSE_WAIT_S``. A graceful close first hands the peer what is
        still buffered; a peer that stopped reading (a paused or cut-off broker) never takes it, and
        aiormq's close would wait for it with no end, holding back the reconnection. Past the bound the
        connection is dropped instead."""
        closing = asyncio.ensure_future(super().wait_closed())
        closing.add_done_callback(_retrieve)  # its error, if nobody awaits it any more, is not news
        try:
            await asyncio.wait_for(asyncio.shield(closing), CLOSE_WAIT_S)
        except TimeoutError:
            self.transport.abort()
            with contextlib.suppress(Exception):  # closed either way; how is not the caller's concern
                await closing


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()


class TurnWrites(TransportFactory):
    """aiormq's transport factory with ``TurnWriter`` (TCP, or TLS for ``amqps``)."""

    def __init__(self) -> None:
        self.last: TurnWriter | None = None  # the writer of the latest connection made (tests)

    async def create(self, url: URL, **kwargs: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        provider = kwargs.pop("ssl_context_provider", None)
        ssl = await provider.get_context() if url.scheme == "amqps" and provider is not None else None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, _ = await loop.create_connection(
                lambda: protocol, url.host or "localhost", url.port or (5671 if ssl else 5672), ssl=ssl, **kwargs)
        except OSError as exc:
            raise AMQPConnectionError(*exc.args) from exc
        self.last = TurnWriter(transport, protocol, reader, loop)
        return reader, self.last
