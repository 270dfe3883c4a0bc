"""A publishing channel the broker did not take a message on is replaced (``ConfirmChannel``), on the
machine's own broker: a quorum queue that holds one message and refuses more (``reject-publish``) Nacks
the second publish, as a cluster node does for a channel that lost track of a queue's leader. A publish
left unanswered past its deadline retires its channel too, and one whose connection closes under it is
refused, not cancelled."""

from __future__ import annotations

import asyncio

import pytest
from aio_pika.abc import AbstractChannel, AbstractExchange
from pamqp.commands import Basic

from shared.broker import ConfirmChannel, amqp_connection, confirmed, persistent_message
from shared.deadlines import Deadlines
from shared.errors import BrokerUnavailable


async def test_a_nacked_publish_retires_the_channel_and_the_next_opens_a_fresh_one(amqp_url: str,
                                                                                   prefix: str) -> None:
    name = f"{prefix}.full"

    async def declare(channel: AbstractChannel) -> AbstractExchange:
        await channel.declare_queue(name, durable=True, arguments={
            "x-queue-type": "quorum", "x-max-length": 1, "x-overflow": "reject-publish"})
        return channel.default_exchange

    async with amqp_connection(amqp_url, "test") as connection:
        holder: ConfirmChannel[AbstractExchange] = ConfirmChannel(connection, declare)

        async def publish(message_id: str) -> AbstractChannel:
            channel, exchange = await holder.get()
            message = persistent_message(b"{}", message_id)
            await confirmed(holder.publish_on(channel, exchange.publish(message, name, mandatory=True)), Deadlines(5))
            return channel

        try:
            first = await publish("1")
            assert holder.current() == (first, first.default_exchange), "an Ack keeps the channel"
            with pytest.raises(BrokerUnavailable, match="DeliveryError"):
                for n in range(2, 20):  # a quorum queue applies its limit once it is over it: soon Nacked
                    assert await publish(str(n)) is first
            assert holder.current() is None, "the Nacked channel is no longer published on"
            channel = await holder.get()
            assert channel[0] is not first and not channel[0].is_closed
            await holder.close()
            assert first.is_closed and channel[0].is_closed, "retired and current channels are closed"
        finally:
            cleanup = await connection.channel()
            await cleanup.queue_delete(name)
            await cleanup.close()


async def test_a_late_nack_on_a_retired_channel_leaves_the_current_one_alone(amqp_url: str) -> None:
    """Publishes in flight on one channel are Nacked one by one: only the first retires it, and the
    channel opened since is not touched by the others."""
    async with amqp_connection(amqp_url, "test") as connection:
        holder: ConfirmChannel[None] = ConfirmChannel(connection, _declare_nothing)
        old, _ = await holder.get()
        holder.retire(old)
        assert holder.current() is None
        new, _ = await holder.get()
        assert new is not old
        holder.retire(old)  # a late Nack on the old channel
        assert holder.current() == (new, None)
        await holder.close()
        assert old.is_closed and new.is_closed


async def _declare_nothing(channel: AbstractChannel) -> None:
    pass


async def test_a_publish_left_unanswered_past_its_deadline_retires_the_channel(amqp_url: str) -> None:
    """A channel that does not answer a publish before its deadline is not published on again: on a
    node that was cut off and came back, a stuck channel Nacked each publish only after the deadline
    had already answered the request, so waiting for a Nack never replaced it."""
    async with amqp_connection(amqp_url, "test") as connection:
        holder: ConfirmChannel[None] = ConfirmChannel(connection, _declare_nothing)
        stuck, _ = await holder.get()
        never_answered: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        with pytest.raises(BrokerUnavailable, match="TimeoutError"):
            await confirmed(holder.publish_on(stuck, never_answered), Deadlines(0.05, tick_s=0.01))
        assert holder.current() is None, "the channel that left a publish unanswered is retired"
        fresh, _ = await holder.get()
        assert fresh is not stuck and not fresh.is_closed
        answered: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        answered.set_result(Basic.Ack(delivery_tag=1))
        await confirmed(holder.publish_on(fresh, answered), Deadlines(0.05, tick_s=0.01))
        assert holder.current() == (fresh, None), "an answered publish keeps the channel"
        await holder.close()
        assert stuck.is_closed and fresh.is_closed


async def test_a_publish_waiting_when_its_connection_closes_is_refused_not_cancelled(amqp_url: str) -> None:
    """aiormq answers the confirms still awaited on a connection that closes (a node restarted by the
    cluster, say) with CancelledError. The publish is refused (``BrokerUnavailable``: its request gets
    a 503) instead of ending its request's task as if cancelled: the client got no answer at all."""
    async with amqp_connection(amqp_url, "test") as connection:
        holder: ConfirmChannel[None] = ConfirmChannel(connection, _declare_nothing)
        channel, _ = await holder.get()
        underlay = await channel.get_underlay_channel()
        waiting = underlay.create_future()  # as a confirm is: answered when the connection closes
        publish = asyncio.ensure_future(confirmed(holder.publish_on(channel, waiting), Deadlines(5)))
        await asyncio.sleep(0)
        await underlay.connection.close()
        with pytest.raises(BrokerUnavailable, match="connection closed"):
            await publish
        assert holder.current() is None, "the channel is not published on again"
        await holder.close()


async def test_a_cancelled_publish_is_still_cancelled(amqp_url: str) -> None:
    """A publish whose own task is cancelled (the service stopping) stays cancelled."""
    async with amqp_connection(amqp_url, "test") as connection:
        holder: ConfirmChannel[None] = ConfirmChannel(connection, _declare_nothing)
        channel, _ = await holder.get()
        never: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        publish = asyncio.ensure_future(confirmed(holder.publish_on(channel, never), Deadlines(5)))
        await asyncio.sleep(0)
        publish.cancel()
        with pytest.raises(asyncio.CancelledError):
            await publish
        assert holder.current() is None
        await holder.close()
