"""What the cluster fault tests share: a sender that signs with the ``standardwebhooks`` package, the
stream of events in waves, and waiting for a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.faults.ledger import Ledger, Sender, Target
from tests.signing import standard_webhooks_headers


class StandardSender(Sender):
    """The ledger's sender, signing each event as a Standard Webhooks provider does (the event id is
    the ``webhook-id``, which the receiver dedupes on)."""

    def sign(self, target: Target, event_id: str) -> tuple[bytes, dict[str, str]]:
        body = b'{"type":"cluster.test","data":{"id":"' + event_id.encode() + b'"}}'
        return body, standard_webhooks_headers(target.secret, body, event_id)


async def stream(sender: Sender, items: list[tuple[Target, str]], per_s: int = 200, wave: int = 40) -> None:
    """Send in waves (about ``per_s`` events a second), so the stream spans the faults."""
    pause_s = wave / per_s
    for start in range(0, len(items), wave):
        await asyncio.gather(sender.send_many(items[start : start + wave]), asyncio.sleep(pause_s))


async def until(predicate: Callable[[], bool], timeout_s: float = 60, what: str = "condition",
                action: Callable[[], Awaitable[Any]] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not met in {timeout_s}s"
        if action is not None:
            await action()
        await asyncio.sleep(0.1)


class Stream:
    """Signed events sent in waves (about ``per_s`` a second) until ``stop``: the faults happen under it."""

    def __init__(self, sender: Sender, targets: list[Target], tag: str, per_s: int = 150, wave: int = 30) -> None:
        self.sender, self.targets, self.tag = sender, targets, tag
        self.pause_s, self.wave = wave / per_s, wave
        self.sent = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def __aenter__(self) -> Stream:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self._stop.is_set():
            await self.stop()

    async def _run(self) -> None:
        while not self._stop.is_set():
            batch = [(self.targets[(self.sent + i) % len(self.targets)], f"msg_{self.tag}_{self.sent + i}")
                     for i in range(self.wave)]
            self.sent += len(batch)
            await asyncio.gather(self.sender.send_many(batch), asyncio.sleep(self.pause_s))

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task


def items_for(targets: list[Target], count: int, tag: str) -> list[tuple[Target, str]]:
    return [(targets[i % len(targets)], f"msg_{tag}_{i}") for i in range(count)]


def ledger_for(name: str) -> Ledger:
    return Ledger(name)
