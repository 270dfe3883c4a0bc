"""Following the ``changes`` channel: one pub/sub subscription, kept alive with backoff (with jitter,
and reset once a subscription is made again).

Every Lua transition publishes ``{id, account_id, version, state}`` on ``Keys.changes``, except the
common change that leaves a connected connection connected (an event counted), which goes to
``Keys.changes_quiet``. Whoever needs to hear about changes in-process (the receiver's connection cache:
``changes``; the status API's stream hub: both) runs ``follow_changes`` as one background task and
handles each message synchronously.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as aioredis

from shared.backoff import Backoff
from shared.redis import REDIS_ERRORS, is_unreachable

log = logging.getLogger(__name__)
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0


def _nothing() -> None:
    return None


async def follow_changes(
    client: aioredis.Redis,
    channel: str | tuple[str, ...],
    on_message: Callable[[bytes | str], None],
    *,
    on_subscribed: Callable[[], None],
    on_lost: Callable[[], None] = _nothing,
    follower: str,
    backoff: Backoff | None = None,
) -> None:
    """Stay subscribed until cancelled. ``on_subscribed`` runs after every (re-)subscription (changes
    may have been missed meanwhile); ``on_lost`` whenever the subscription ends, cancellation included.
    Between attempts it waits by ``backoff``, which a successful subscription resets."""
    retry = backoff or Backoff(FIRST_BACKOFF_S, MAX_BACKOFF_S)

    def subscribed() -> None:
        retry.reset()
        on_subscribed()

    while True:
        error = "ended"
        try:
            await _listen_once(client, channel, on_message, subscribed)
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            error = type(exc).__name__
        finally:
            on_lost()
        delay = retry.next_s()
        log.warning("change subscription lost; re-subscribing",
                    extra={"follower": follower, "error": error, "retry_in_s": round(delay, 3)})
        await asyncio.sleep(delay)


async def _listen_once(
    client: aioredis.Redis,
    channel: str | tuple[str, ...],
    on_message: Callable[[bytes | str], None],
    on_subscribed: Callable[[], None],
) -> None:
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(*((channel,) if isinstance(channel, str) else channel))
        on_subscribed()
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message.get("type") == "message":
                on_message(message["data"])
    finally:
        with contextlib.suppress(*REDIS_ERRORS):
            await pubsub.aclose()  # type: ignore[no-untyped-call]
