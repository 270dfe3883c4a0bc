"""AMQP frames written in one turn of the event loop leave in one socket write (``shared/amqp_writes.py``),
on the machine's own broker: every publish is still confirmed, in order, and a lone frame leaves at once."""

from __future__ import annotations

import asyncio
import time

import aio_pika
import pytest

from shared import amqp_writes
from shared.amqp_writes import TurnWriter
from shared.broker import ConfirmedPublisher, Topology, TurnWritesConnection, amqp_connection


async def test_publishes_of_one_turn_go_out_in_one_write_and_are_all_confirmed(
    amqp_url: str, prefix: str, amqp_cleanup: None
) -> None:
    topology = Topology(prefix, f"{prefix}.analytics")
    async with amqp_connection(amqp_url, "test") as connection:
        assert isinstance(connection, TurnWritesConnection)
        publisher = ConfirmedPublisher(connection, topology, 5)
        await publisher.publish(b"{}", message_id="first")  # opens and declares the channel
        writer = connection.writes.last
        assert writer is not None
        writes, flushes = writer.writes, writer.flushes
        for burst in range(20):  # eight requests answered in one turn, as a busy receiver has them
            await asyncio.gather(*(publisher.publish(b"{}", message_id=f"{burst}-{n}") for n in range(8)))
        assert writer.writes - writes == 160
        assert writer.flushes - flushes <= 40, "the frames of a burst went out one write each"
        alone = writer.flushes
        await asyncio.wait_for(publisher.publish(b"{}", message_id="alone"), 2)  # a lone publish is not held
        assert writer.flushes == alone + 1

    # Every message is in the queue, in the order published within each burst.
    async with await aio_pika.connect(amqp_url) as check:
        channel = await check.channel()
        queue = await channel.get_queue(f"{prefix}.deliveries")
        ids = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            ids.append(message.message_id)
    assert ids[0] == "first" and ids[-1] == "alone" and len(ids) == 162
    assert ids[1:9] == [f"0-{n}" for n in range(8)]


async def test_closing_towards_a_peer_that_stopped_reading_ends_within_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A broker that is paused or cut off reads nothing: a graceful close would wait for it to take the
    buffered frames forever (and aiormq's reconnection with it). The close gives up after the bound."""
    monkeypatch.setattr(amqp_writes, "CLOSE_WAIT_S", 0.5)
    accepted: list[asyncio.StreamWriter] = []

    async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # kept open, never read

    server = await asyncio.start_server(never_reads, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.create_connection(lambda: protocol, "127.0.0.1", port)
    writer = TurnWriter(transport, protocol, reader, loop)
    chunk = b"x" * 65536
    for _ in range(1024):  # 64 MiB: far more than the two sockets' kernel buffers hold
        writer.write(chunk)
    writer.flush()
    assert transport.get_write_buffer_size() > 0, "the peer took everything: the test proves nothing"
    writer.close()
    started = time.monotonic()
    await asyncio.wait_for(writer.wait_closed(), 5)
    assert time.monotonic() - started < 3
    assert transport.is_closing()
    for peer in accepted:
        peer.close()
    server.close()
    await server.wait_closed()
