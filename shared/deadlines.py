"""One deadline for each of many short awaits, kept by one timer instead of one timer per await.

``asyncio.timeout`` arms a timer when it is entered and cancels it when it is left: measured under
callgrind on uvloop, about 30,000 instructions per use, as much as a sixth of a status read's own work
and a good part of a confirmed publish. The calls it bounds here (a Redis read, a broker's confirm) end
in milliseconds, and their bound only has to catch the rare one that hangs: ``Deadlines`` notes each
running call's deadline in a dict, and one timer, armed only while calls are running, looks every
``tick_s`` for calls whose deadline comes before its next look and cancels their tasks. Such a call
raises ``TimeoutError``, as under ``asyncio.timeout``, between ``seconds - tick_s`` and ``seconds`` after
it began: never later than its bound, so a bound kept below another (a publish's below the shutdown's
grace) stays below it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


class Deadlines:
    """Bounds each ``run`` to ``seconds`` (given up on at most ``tick_s`` before: a tenth of it, by
    default). One instance serves every task of one event loop; a ``run`` inside another ``run`` of the
    same instance and task is bounded by the outer one."""

    def __init__(self, seconds: float, tick_s: float | None = None) -> None:
        self.seconds = seconds
        self.tick_s = tick_s if tick_s is not None else seconds / 10
        # Each running call's task -> (its deadline in loop time, how many cancellations it had asked of
        # it before: a cancellation from elsewhere stays a cancellation, as under ``asyncio.timeout``).
        self._running: dict[asyncio.Task[Any], tuple[float, int]] = {}
        self._expired: set[asyncio.Task[Any]] = set()  # cancelled here; not yet seen to end
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    async def run(self, call: Awaitable[T]) -> T:
        task = asyncio.current_task()
        if task is None or task in self._running:
            return await call
        loop = task.get_loop()
        self._running[task] = (loop.time() + self.seconds, task.cancelling())
        if self._timer is None or self._timer_loop is not loop:  # (a new loop: a test's, say)
            self._timer, self._timer_loop = loop.call_later(self.tick_s, self._check, loop), loop
        try:
            return await call
        except asyncio.CancelledError:
            if task in self._expired:
                self._expired.discard(task)
                if task.uncancel() <= self._running[task][1]:
                    raise TimeoutError(f"no answer within {self.seconds:g} s") from None
            raise
        finally:
            del self._running[task]
            if task in self._expired:  # cancelled here, but the call ended without raising it
                self._expired.discard(task)
                task.uncancel()

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        next_look = loop.time() + self.tick_s
        for task, (deadline, _) in self._running.items():
            if deadline <= next_look and task not in self._expired and task.get_loop() is loop:
                self._expired.add(task)
                task.cancel()
        if self._running:
            self._timer = loop.call_later(self.tick_s, self._check, loop)

    @property
    def running(self) -> int:
        """Calls running now."""
        return len(self._running)
