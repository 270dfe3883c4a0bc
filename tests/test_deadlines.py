"""``Deadlines``: one timer bounding many calls, as ``asyncio.timeout`` bounds one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from shared.deadlines import Deadlines
from shared.errors import StoreUnavailable
from shared.redis import make_redis
from shared.store import Store


async def test_a_call_that_would_pass_its_deadline_raises_timeout_error_within_one_tick_before_it() -> None:
    deadlines = Deadlines(0.2, tick_s=0.05)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await deadlines.run(asyncio.sleep(10))
    took = time.monotonic() - started
    assert 0.2 - 0.05 <= took < 0.2 + 0.1  # never past the bound but for a loaded machine's scheduling
    # The task is not left cancelled: it goes on awaiting.
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.01)
    assert deadlines.running == 0


async def test_calls_within_their_deadline_return_their_value_and_only_the_slow_one_times_out() -> None:
    deadlines = Deadlines(0.3, tick_s=0.05)

    async def answer(value: int, after_s: float) -> int:
        await asyncio.sleep(after_s)
        return value

    results = await asyncio.gather(*(deadlines.run(answer(i, 0.01 * (i % 5))) for i in range(50)),
                                   deadlines.run(answer(-1, 5)), return_exceptions=True)
    assert results[:50] == list(range(50))
    assert isinstance(results[50], TimeoutError)
    assert deadlines.running == 0


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    deadlines = Deadlines(5, tick_s=0.05)
    task = asyncio.create_task(deadlines.run(asyncio.sleep(10)))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deadlines.running == 0


async def test_a_call_inside_another_of_the_same_deadlines_is_bounded_by_the_outer_one() -> None:
    deadlines = Deadlines(0.2, tick_s=0.05)

    async def outer() -> None:
        await asyncio.sleep(0.1)
        await deadlines.run(asyncio.sleep(10))  # a fresh 0.2 s would end at 0.3 s; the outer ends at 0.2

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await deadlines.run(outer())
    assert time.monotonic() - started < 0.3


async def test_no_timer_runs_while_no_call_does() -> None:
    deadlines = Deadlines(0.2, tick_s=0.02)
    assert await deadlines.run(asyncio.sleep(0.01, "done")) == "done"
    await asyncio.sleep(0.1)  # the timer's last look found nothing running, and did not come back
    assert deadlines._timer is None


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A TCP server that accepts and never answers: a Redis that hangs."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_a_store_read_of_a_redis_that_never_answers_is_store_unavailable_after_its_deadline(
    silent_port: int,
) -> None:
    client = make_redis(f"redis://127.0.0.1:{silent_port}/0", socket_timeout=None)
    store = Store(client, "deadline-test", deadline_s=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable):
            await store.get("c_0123456789abcdef0123456789abcdef")
    finally:
        await client.aclose()
    assert 0.3 - 0.03 <= time.monotonic() - started < 1.5  # (a tenth of the bound: its tick)
