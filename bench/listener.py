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

import aiohttp
import orjson
import redis.asyncio as aioredis

from bench.loadgen import run_loop
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
    """Hold one stream per URL (comma-separated); note every connection event on any of them."""
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    opened: list[asyncio.Future[None]] = []
    # One connection per stream: aiohttp pools 100 by default, and a stream never gives its connection back.
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:

        async def hold(url: str, ready: asyncio.Future[None]) -> None:
            async with session.get(url, headers=headers) as resp:
                if resp.status != 200:
                    raise SystemExit(f"the stream answered {resp.status}: {await resp.text()}")
                ready.set_result(None)
                async for line in resp.content:
                    if line.startswith(b"data:"):
                        change = orjson.loads(line[5:])
                        if "id" in change and "version" in change:
                            records.append((change["id"], int(change["version"]), time.time()))

        tasks = []
        for url in urls.split(","):
            opened.append(asyncio.get_running_loop().create_future())
            tasks.append(asyncio.create_task(hold(url, opened[-1])))
        await asyncio.gather(*opened)
        _ready()
        await asyncio.gather(*tasks)


async def main(argv: list[str]) -> list[Record]:
    records: list[Record] = []
    listen: Any = pubsub if argv[0] == "pubsub" else sse
    task = asyncio.create_task(listen(records, argv[1], argv[2]))
    stop = asyncio.create_task(asyncio.to_thread(sys.stdin.readline))
    await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raise what went wrong
    task.cancel()
    return records


if __name__ == "__main__":
    sys.stdout.buffer.write(orjson.dumps(run_loop(main(sys.argv[1:]))) + b"\n")
