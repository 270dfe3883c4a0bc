"""shared.changes.follow_changes through a fault proxy in front of the real Redis: while Redis is away
it retries with growing, jittered delays; a subscription made again resets them, and messages flow again."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable

import redis.asyncio as aioredis

from shared.backoff import Backoff
from shared.changes import follow_changes
from tests.faults.proxy import FaultProxy


class RecordingBackoff(Backoff):
    """A real backoff that also notes the ceiling of each delay it hands out."""

    def __init__(self, *args: float, **kwargs: random.Random) -> None:
        super().__init__(*args, **kwargs)
        self.caps: list[float] = []

    def next_s(self) -> float:
        self.caps.append(self.cap_s())
        return super().next_s()


async def _until(condition: Callable[[], bool], what: str, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        await asyncio.sleep(0.02)


async def test_backoff_grows_while_redis_is_away_and_resets_once_subscribed(
    redis_proxy: FaultProxy, redis_url: str, redis_client: aioredis.Redis, prefix: str
) -> None:
    channel = f"{prefix}:changes"
    through_proxy = aioredis.Redis.from_url(redis_proxy.url(redis_url), socket_connect_timeout=2)
    backoff = RecordingBackoff(0.02, 0.32, rng=random.Random(5))
    received: list[bytes | str] = []
    subscriptions: list[float] = []
    follower = asyncio.create_task(follow_changes(
        through_proxy, channel, received.append, on_subscribed=lambda: subscriptions.append(time.monotonic()),
        follower="test", backoff=backoff,
    ))
    try:
        await _until(lambda: len(subscriptions) == 1, "the first subscription")
        await redis_client.publish(channel, "before")
        await _until(lambda: len(received) == 1, "a message while subscribed")

        redis_proxy.cut()
        await _until(lambda: len(backoff.caps) >= 6, "six retries while Redis is away")
        assert backoff.caps[:6] == [0.02, 0.04, 0.08, 0.16, 0.32, 0.32]

        redis_proxy.restore()
        await _until(lambda: len(subscriptions) == 2, "a subscription once Redis is back")
        assert backoff.attempt == 0
        retries_before = len(backoff.caps)
        await redis_client.publish(channel, "after")
        await _until(lambda: len(received) == 2, "a message after the subscription was made again")

        redis_proxy.cut()
        await _until(lambda: len(backoff.caps) > retries_before, "a retry after the second outage")
        assert backoff.caps[retries_before] == 0.02  # the first outage's long waits did not carry over
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        redis_proxy.restore()
        await through_proxy.aclose()
    assert [m if isinstance(m, str) else m.decode() for m in received] == ["before", "after"]
