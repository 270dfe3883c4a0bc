"""Coalescing concurrent ``apply_delivery`` calls into pipelined Redis round trips.

The consumer handles each message in its own task; the deliveries that arrive together (one read of
the AMQP socket brings many) all ask for their script in the same turn of the event loop. Queued
until the end of that turn, they go to Redis as one pipeline: one write and one read instead of one
each per delivery, and no added wait (nothing is held for a timer). At most ``max_in_flight`` pipelines
run at once: what arrives meanwhile waits for one to come back and then goes as one larger batch, so
under load the batches grow with the load instead of every turn of the loop paying its own round trip
(and the pool its own connection). Each caller still gets its own result, or its own script's error;
Redis away fails every caller of the batch with ``StoreUnavailable``, which the verifier already retries.
"""

from __future__ import annotations

import asyncio

from shared.errors import StoreUnavailable
from shared.models import DeliveryMessage
from shared.store import ApplyResult, Store

Waiting = tuple[DeliveryMessage, int, "asyncio.Future[ApplyResult]"]


class ApplyBatcher:
    def __init__(self, store: Store, max_batch: int = 256, max_in_flight: int = 2) -> None:
        self.store = store
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._waiting: list[Waiting] = []
        self._flush_scheduled = False
        self._running: set[asyncio.Task[None]] = set()

    async def apply_delivery(self, msg: DeliveryMessage, consumed_at_ms: int = 0) -> ApplyResult:
        future: asyncio.Future[ApplyResult] = asyncio.get_running_loop().create_future()
        self._waiting.append((msg, consumed_at_ms, future))
        self._soon()
        return await future

    def _soon(self) -> None:
        """Send what waits at the end of this turn; while ``max_in_flight`` batches run, the first of
        them to come back does."""
        if len(self._running) >= self.max_in_flight:
            return
        if len(self._waiting) >= self.max_batch:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._waiting or len(self._running) >= self.max_in_flight:
            return
        batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
        task = asyncio.create_task(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._waiting:
            self._soon()

    async def _run(self, batch: list[Waiting]) -> None:
        try:
            results = await self.store.apply_deliveries([msg for msg, _, _ in batch], [at for _, at, _ in batch])
        except StoreUnavailable as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable(str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - handed to each caller, whose handler decides
            results = [exc] * len(batch)
        for (_, _, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller gave up (shutdown)
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
