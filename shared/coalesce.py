"""Reads asked for during one turn of the event loop, answered by one bulk read.

Under load many requests miss a cache in the same turn (a receiver's connections, a status stream's
changed connections). Each miss on its own costs a Redis round trip: a write, a wake-up and a reply to
parse. ``TurnReads`` gathers the keys asked for in one turn, hands them to one bulk read (a pipeline)
once the turn is over, and answers every caller from it; two callers asking for the same key in that
turn share one read. A read begun after a key was asked for is never older than the ask.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_RUNNING: set[asyncio.Task[None]] = set()  # bulk reads in flight (the loop keeps only weak references)


class TurnReads(Generic[K, V]):
    """``get(key)``, with the keys of one loop turn read together by ``bulk`` (one value per key, in
    order). A failed bulk read fails each caller of its turn with the same exception."""

    def __init__(self, bulk: Callable[[list[K]], Awaitable[list[V]]]) -> None:
        self._bulk = bulk
        self._waiting: dict[K, asyncio.Future[V]] = {}
        self.batches = 0  # bulk reads made (tests and the curious)

    async def get(self, key: K) -> V:
        # Shielded: a caller given up on (its client gone) must not cancel the read others wait for.
        return await asyncio.shield(self.ask(key))

    def ask(self, key: K) -> asyncio.Future[V]:
        """The future of ``key``'s value, shared by every caller of this turn: for a caller that keeps
        the future itself (no coroutine and task per ask). Await it shielded, never cancel it."""
        future = self._waiting.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            if not self._waiting:  # the first of this turn: read them all once the turn is over
                loop.call_soon(self._send)
            future = self._waiting[key] = loop.create_future()
        return future

    def _send(self) -> None:
        batch, self._waiting = self._waiting, {}
        self.batches += 1
        task = asyncio.get_running_loop().create_task(self._read(batch))
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)

    async def _read(self, batch: dict[K, asyncio.Future[V]]) -> None:
        try:
            values = await self._bulk(list(batch))
        except Exception as exc:
            for future in batch.values():
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # marked retrieved: a caller gone meanwhile leaves no warning
            return
        except BaseException:  # cancelled (shutting down): so are the callers
            for future in batch.values():
                future.cancel()
            raise
        for future, value in zip(batch.values(), values, strict=True):
            if not future.done():
                future.set_result(value)
