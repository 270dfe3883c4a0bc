"""The limits: the least a server on this box must do for each of our rows, measured the same way.

Each is its own process (``python -m bench.limits NAME ...``):

- ``bare``: aiohttp answering 202 to ``POST /hooks/{id}``. Nothing is faster with aiohttp here.
- ``minimal-receiver``: checks one Standard Webhooks HMAC, publishes one persistent message with
  publisher confirms through aio-pika to a durable quorum queue, then answers 202: the least a
  receiver that keeps our guarantee ("202 only after confirm") must do.
- ``json-redis``: ``GET /v1/connections/{id}`` reads the connection's hash (HGETALL, the same key the
  status API reads) and answers it as JSON: the least a status API must do.
- ``publish-loop``: a raw aio-pika confirmed-publish loop (``concurrency`` in flight); prints JSON.
- ``consume-loop``: consume from a quorum queue, store each message (one HINCRBY, pipelined per burst),
  then ack (one multiple-ack per burst); prints JSON: the least a verifier that stores each delivery
  before acking must do.
- ``pipeline-consumer``: the same consumer, running until stopped; with a ``minimal-receiver`` publishing
  to its queue it makes the *minimal pipeline* (webhook -> HMAC -> confirmed publish -> consume -> one
  Redis write -> ack), counted in Redis so nothing lost shows.

The HTTP ones take ``--workers N`` (SO_REUSEPORT), so they can run with as many processes as ours.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import multiprocessing
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import orjson
import redis.asyncio as aioredis
from aiohttp import web
from aiormq.abc import FieldTable

from bench.loadgen import run_loop
from shared.keys import Keys

QUEUE_ARGS: FieldTable = {"x-queue-type": "quorum"}


# --- HTTP limit servers ------------------------------------------------------------------------


async def bare_hook(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=202, body=b'{"status":"accepted"}', content_type="application/json")


def bare_app(args: argparse.Namespace) -> web.Application:
    app = web.Application()
    app.router.add_post("/hooks/{connection_id}", bare_hook)
    return app


def _signature_ok(key: bytes, request: web.Request, body: bytes) -> bool:
    msg_id = request.headers.get("webhook-id", "")
    stamp = request.headers.get("webhook-timestamp", "")
    given = request.headers.get("webhook-signature", "").split(" ")[0].partition(",")[2]
    expected = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    try:
        return hmac.compare_digest(expected, base64.b64decode(given))
    except ValueError:
        return False


def minimal_receiver_app(args: argparse.Namespace) -> web.Application:
    key = base64.b64decode(args.secret.removeprefix("whsec_"))
    app = web.Application()
    exchange_key = web.AppKey("exchange", aio_pika.abc.AbstractExchange)

    async def amqp(app: web.Application) -> AsyncIterator[None]:
        connection = await aio_pika.connect_robust(args.amqp_url)
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(args.queue, durable=True, arguments=QUEUE_ARGS)
        app[exchange_key] = channel.default_exchange
        del queue
        yield
        await connection.close()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        if not _signature_ok(key, request, body):
            return web.Response(status=401)
        message = orjson.dumps({"delivery_id": uuid.uuid4().hex, "connection_id": request.match_info["cid"],
                                "received_at_ms": int(time.time() * 1000), "outcome": "verified",
                                "event_id": request.headers.get("webhook-id")})
        await request.app[exchange_key].publish(
            aio_pika.Message(message, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), args.queue
        )
        return web.Response(status=202, body=b'{"status":"accepted"}', content_type="application/json")

    app.cleanup_ctx.append(amqp)
    app.router.add_post("/hooks/{cid}", hook)
    return app


def json_redis_app(args: argparse.Namespace) -> web.Application:
    keys = Keys(args.prefix)
    app = web.Application()
    client_key = web.AppKey("redis", aioredis.Redis)

    async def client(app: web.Application) -> AsyncIterator[None]:
        app[client_key] = aioredis.Redis.from_url(args.redis_url, decode_responses=True)
        yield
        await app[client_key].aclose()

    async def read(request: web.Request) -> web.Response:
        raw: dict[str, str] = await request.app[client_key].hgetall(keys.conn(request.match_info["cid"]))  # type: ignore[misc]
        if not raw:
            return web.Response(status=404)
        return web.Response(body=orjson.dumps(raw), content_type="application/json")

    app.cleanup_ctx.append(client)
    app.router.add_get("/v1/connections/{cid}", read)
    return app


APPS = {"bare": bare_app, "minimal-receiver": minimal_receiver_app, "json-redis": json_redis_app}


def _serve(args: argparse.Namespace) -> None:
    async def main() -> None:
        runner = web.AppRunner(APPS[args.name](args), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port, reuse_port=True, backlog=1024).start()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    run_loop(main())


def serve(args: argparse.Namespace) -> None:
    """Run ``args.workers`` processes on one port; SIGTERM stops them all."""
    if args.workers <= 1:
        _serve(args)
        return
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_serve, args=(args,)) for _ in range(args.workers)]
    for p in procs:
        p.start()

    def stop(signum: int, frame: object) -> None:
        for p in procs:
            if p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for p in procs:
        p.join()


# --- loops ---------------------------------------------------------------------------------------


async def publish_loop(args: argparse.Namespace) -> dict[str, Any]:
    """Publish ``count`` persistent messages with confirms, ``concurrency`` in flight."""
    connection = await aio_pika.connect(args.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(args.queue, durable=True, arguments=QUEUE_ARGS)
        body = orjson.dumps({"delivery_id": uuid.uuid4().hex, "outcome": "verified", "pad": "x" * 200})
        sent = iter(range(args.count))
        started = time.perf_counter()

        async def worker() -> None:
            for _ in sent:
                await channel.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), args.queue
                )

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - started
    return {"count": args.count, "elapsed_s": elapsed, "rate": args.count / elapsed}


class BurstStore:
    """Stores each message before acking it, as cheaply as that can be done: the messages of one burst
    (those that arrive before the event loop turns) get one pipeline of HINCRBYs on ``counter``, then
    one multiple-ack; bursts are stored and acked in order."""

    def __init__(self, client: aioredis.Redis, counter: str) -> None:
        self.client = client
        self.counter = counter
        self.waiting: list[aio_pika.abc.AbstractIncomingMessage] = []
        self.in_order = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()
        self.handled = 0
        self.started = 0.0
        self.progress = asyncio.Event()

    async def on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        if not self.started:
            self.started = time.perf_counter()
        self.waiting.append(message)
        if len(self.waiting) == 1:
            task = asyncio.create_task(self.flush())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def flush(self) -> None:
        async with self.in_order:
            batch = self.waiting[:]
            self.waiting.clear()
            if not batch:
                return
            async with self.client.pipeline(transaction=False) as pipe:
                for _ in batch:
                    pipe.hincrby(self.counter, "n", 1)
                await pipe.execute()
            await batch[-1].ack(multiple=True)
            self.handled += len(batch)
            self.progress.set()


async def consume_loop(args: argparse.Namespace) -> dict[str, Any]:
    """Drain ``count`` messages, storing each before acking it (``BurstStore``)."""
    client = aioredis.Redis.from_url(args.redis_url)
    counter = f"{args.prefix}:limit:consumed"
    store = BurstStore(client, counter)
    connection = await aio_pika.connect(args.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=256)
        queue = await channel.declare_queue(args.queue, durable=True, arguments=QUEUE_ARGS)
        await queue.consume(store.on_message)
        deadline = time.monotonic() + 120
        while store.handled < args.count and time.monotonic() < deadline:
            store.progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(store.progress.wait(), 1)
        elapsed = time.perf_counter() - store.started
    await client.delete(counter)
    await client.aclose()
    return {"count": store.handled, "elapsed_s": elapsed, "rate": store.handled / elapsed}


def pipeline_consumer(args: argparse.Namespace) -> None:
    """The minimal pipeline's consumer, until SIGTERM: consumes ``args.queue`` and counts every message
    in Redis (``PREFIX:limit:pipeline``, field ``n``) before acking it, as ``BurstStore`` does."""

    async def main() -> None:
        client = aioredis.Redis.from_url(args.redis_url)
        store = BurstStore(client, f"{args.prefix}:limit:pipeline")
        connection = await aio_pika.connect(args.amqp_url)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        async with connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=256)
            queue = await channel.declare_queue(args.queue, durable=True, arguments=QUEUE_ARGS)
            await queue.consume(store.on_message)
            print("ready", flush=True)
            await stop.wait()
        await client.aclose()

    run_loop(main())


LOOPS = {"publish-loop": publish_loop, "consume-loop": consume_loop}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name", choices=sorted([*APPS, *LOOPS, "pipeline-consumer"]))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--prefix", default="bench")
    parser.add_argument("--queue", default="bench.limit")
    parser.add_argument("--secret", default="")
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    if args.name == "pipeline-consumer":
        pipeline_consumer(args)
    elif args.name in LOOPS:
        result = run_loop(LOOPS[args.name](args))
        sys.stdout.buffer.write(orjson.dumps(result))
    else:
        serve(args)


if __name__ == "__main__":
    main()
