"""A small asyncio TCP fault proxy of the tests' own, between a service and a real server.

It listens on a loopback port and forwards every byte to the real server, until a test tells it to
misbehave. The machine's shared RabbitMQ and Redis are never stopped: a fault is what the proxy does to
the connections that pass through it.

    proxy.cut()        close every open connection now, and close new ones at once (server "down")
    proxy.blackhole()  keep every connection open but forward nothing, either way (server "hangs")
    proxy.delay(0.2)   forward, but hold every chunk this long first (slow network)
    proxy.restore()    forward normally again

It runs in the test's own event loop (``async with FaultProxy(host, port) as proxy``); the services
under test are subprocesses or apps on the same loop, pointed at ``proxy.url(real_url)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from dataclasses import dataclass, field
from typing import Self

CHUNK = 64 * 1024


class Mode(enum.Enum):
    FORWARD = "forward"
    REFUSE = "refuse"
    BLACKHOLE = "blackhole"


@dataclass(eq=False)  # hashed by identity: kept in a set
class Pipe:
    """One client connection and its upstream twin."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                with contextlib.suppress(Exception):
                    # abort, not close: a cut is a reset, not a polite FIN after the queued bytes
                    writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = 0
        self.mode = Mode.FORWARD
        self.delay_s = 0.0
        self.connections_seen = 0
        self._pipes: set[Pipe] = set()
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()

    # --- life -------------------------------------------------------------------------------------

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pipe in list(self._pipes):
            pipe.close()
        self._pipes.clear()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def url(self, scheme_url: str) -> str:
        """``scheme_url`` (the real server's URL) with host and port pointed at this proxy."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(scheme_url)
        netloc = f"{self.host}:{self.port}"
        if parts.username:
            auth = parts.username + (f":{parts.password}" if parts.password else "")
            netloc = f"{auth}@{netloc}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    # --- faults -----------------------------------------------------------------------------------

    def cut(self) -> None:
        """Reset every open connection; refuse (accept and reset) new ones until ``restore``."""
        self.mode = Mode.REFUSE
        self._flowing.set()
        for pipe in list(self._pipes):
            pipe.close()
        self._pipes.clear()

    def blackhole(self) -> None:
        """Hold every connection, old and new, open and silent until ``restore``."""
        self.mode = Mode.BLACKHOLE
        self._flowing.clear()

    def delay(self, seconds: float) -> None:
        self.delay_s = seconds

    def restore(self) -> None:
        self.mode = Mode.FORWARD
        self.delay_s = 0.0
        self._flowing.set()

    @property
    def open_connections(self) -> int:
        return len(self._pipes)

    # --- plumbing ---------------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_seen += 1
        if self.mode is Mode.REFUSE:
            writer.transport.abort()
            return
        pipe = Pipe(writer)
        self._pipes.add(pipe)
        try:
            await self._flowing.wait()  # a blackholed server never even answers the connect
            if self.mode is Mode.REFUSE:
                return
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            pipe.upstream = up_writer
            pipe.tasks = [
                asyncio.create_task(self._pump(reader, up_writer)),
                asyncio.create_task(self._pump(up_reader, writer)),
            ]
            await asyncio.wait(pipe.tasks, return_when=asyncio.FIRST_COMPLETED)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            pipe.close()
            self._pipes.discard(pipe)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                await self._flowing.wait()
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                    await self._flowing.wait()
                writer.write(data)
                await writer.drain()
