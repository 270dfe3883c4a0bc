"""Receives status changes for the end-to-end row and notes when each arrived.

``python -m bench.listener sse URL[,URL...] TOKEN`` holds SSE streams (accounts' streams); ``python -m
bench.listener pubsub REDIS_URL CHANNEL`` subscribes to the Redis ``changes`` channel instead. It
prints ``ready`` once listening, records ``[connection id, version, arrival wall time]`` for every
change until a line arrives on stdin, then prints them as one JSON line.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis

from bench.loadgen import run_loop
from bench.sse_clients import open_all
from shared.keys import quiet_changes

Record = tuple[str, int, float]


def _ready() -> None:
    sys.stdout.write("ready\n")
    sys.stdout.flush()


async def pubsub(records: list[Record], redis_url: str, channel: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    async with client.pubsub() as ps:
        await ps.subscribe(channel, quiet_changes(channel))  # an event counted goes to the quiet one
        for _ in range(2):
            await ps.get_message(timeout=5)  # the subscribe confirmations
        _ready()
        async for message in ps.listen():
            if message["type"] == "message":
                change = orjson.loads(message["data"])
                records.append((change["id"], int(change["version"]), time.time()))


async def sse(records: list[Record], urls: str, token: str) -> None:
    """Hold one stream per URL (comma-separated); note every connection event on any of them. Each
    stream is a bare asyncio protocol (``bench.sse_clients``), not an HTTP client: this process shares
    the box with the system it measures, so it should take as little of it as it can."""
    parts = [urlsplit(url) for url in urls.split(",")]
    host, port = parts[0].hostname or "127.0.0.1", parts[0].port or 80
    changes: list[list[Any]] = []
    streams, failed = await open_all(host, port, [p.path for p in parts], token, changes)
    if failed:
        raise SystemExit(f"{failed} of {len(parts)} streams did not open")
    for stream in streams:
        stream.mark = stream.events  # from now on, every change is noted
    _ready()
    try:
        await asyncio.Event().wait()  # until cancelled
    finally:
        records.extend((str(c[0]), int(c[1]), float(c[2])) for c in changes)


async def main(argv: list[str]) -> list[Record]:
    records: list[Record] = []
    listen: Any = pubsub if argv[0] == "pubsub" else sse
    task = asyncio.create_task(listen(records, argv[1], argv[2]))
    stop = asyncio.create_task(asyncio.to_thread(sys.stdin.readline))
    await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raise what went wrong
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)  # its last notes are kept on the way out
    return records


if __name__ == "__main__":
    sys.stdout.buffer.write(orjson.dumps(run_loop(main(sys.argv[1:]))) + b"\n")
