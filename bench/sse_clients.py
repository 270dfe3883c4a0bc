"""Holds many SSE streams at once, cheaply (one asyncio protocol per socket, no HTTP client library).

``python -m bench.sse_clients SPEC.json``: opens every stream in the spec (a list of paths), prints
``ready <opened> <failed>`` once each has shown its first event, then waits for a line on stdin; from
then on it notes when each stream receives its next event, and after ``wait_s`` (or once all have)
prints ``{"received": [...arrival wall times...]}``. With ``"record": true`` in the spec it instead notes
``[connection id, version, arrival]`` of every event on any stream until a second line on stdin (a
number: it waits, up to ``settle_s``, until that many have arrived), and prints ``{"changes": [...]}``
(the streams series of ``bench.growth``).

``bench.sse_measure`` is the harness side: streams held, RSS per stream, and one change fanned out.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Any

import orjson

from bench.loadgen import run_loop

OPEN_AT_ONCE = 100


class Stream(asyncio.Protocol):
    def __init__(self, request: bytes, opened: asyncio.Future[bool], changes: list[list[Any]] | None = None) -> None:
        self.request = request
        self.opened = opened
        self.events = 0
        self.mark = -1  # events seen when the harness said "go"
        self.arrived = 0.0
        self.all_arrived: asyncio.Event | None = None
        self.tail = b""
        self.changes = changes  # when given: [connection id, version, arrival] of each event after "go"
        self.line = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]  # uvloop's transports are not asyncio's

    def data_received(self, data: bytes) -> None:
        if not self.opened.done() and data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.1 200"):
            self.opened.set_result(False)  # refused: no point waiting for events
            return
        chunk = self.tail + data
        self.events += chunk.count(b"\ndata:") + chunk.startswith(b"data:")
        self.tail = chunk[-6:]
        if self.changes is not None and self.mark >= 0:
            self.note_changes(data)
        if self.events and not self.opened.done():
            self.opened.set_result(True)
        if self.mark >= 0 and self.events > self.mark and not self.arrived:
            self.arrived = time.time()

    def note_changes(self, data: bytes) -> None:
        at = time.time()
        *lines, self.line = (self.line + data).split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                with contextlib.suppress(orjson.JSONDecodeError):
                    change = orjson.loads(line[5:])
                    if isinstance(change, dict) and "id" in change and "version" in change:
                        self.changes.append([change["id"], int(change["version"]), at])  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_result(False)


async def open_all(host: str, port: int, paths: list[str], token: str,
                   changes: list[list[Any]] | None = None) -> tuple[list[Stream], int]:
    loop = asyncio.get_running_loop()
    streams: list[Stream] = []
    failed = 0
    errors: dict[str, int] = {}
    sem = asyncio.Semaphore(OPEN_AT_ONCE)

    async def one(path: str) -> None:
        nonlocal failed
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                   "Accept: text/event-stream\r\n\r\n").encode()
        async with sem:
            opened: asyncio.Future[bool] = loop.create_future()
            try:
                _, proto = await loop.create_connection(lambda: Stream(request, opened, changes), host, port)
                ok = await asyncio.wait_for(opened, 10)
            except (OSError, TimeoutError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                ok = False
            if ok:
                streams.append(proto)
            else:
                failed += 1

    await asyncio.gather(*(one(p) for p in paths))
    if errors:
        print(f"sse_clients: streams that did not open: {errors}", file=sys.stderr, flush=True)
    return streams, failed


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    changes: list[list[Any]] | None = [] if spec.get("record") else None
    streams, failed = await open_all(spec["host"], spec["port"], spec["paths"], spec["token"], changes)
    sys.stdout.write(f"ready {len(streams)} {failed}\n")
    sys.stdout.flush()
    await asyncio.to_thread(sys.stdin.readline)
    if changes is not None:  # record every change until told to stop
        for s in streams:
            s.mark = s.events
        expected = int((await asyncio.to_thread(sys.stdin.readline)).strip() or 0)
        deadline = time.monotonic() + spec.get("settle_s", 15)
        while len(changes) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return {"changes": changes, "streams": len(streams)}
    watched = streams[: spec["fanout"]]
    for s in watched:
        s.mark = s.events
    deadline = time.monotonic() + spec["wait_s"]
    while time.monotonic() < deadline and not all(s.arrived for s in watched):
        await asyncio.sleep(0.01)
    return {"received": [s.arrived for s in watched if s.arrived], "watched": len(watched)}


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as fh:
        loaded = orjson.loads(fh.read())
    sys.stdout.buffer.write(orjson.dumps(run_loop(main(loaded))) + b"\n")
