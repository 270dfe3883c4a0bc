"""AMQP frames written in one turn of the event loop leave in one socket write (``shared/amqp_writes.py``),
on the machine's own broker: every publish is still confirmed, in order, and a lone frame leaves at once."""

from __future__ import annotations

import asyncio

import aio_pika

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
