"""SIGTERM to each service (a real subprocess) while it has work in flight.

- receiver: requests in the middle of a (slowed) publish are finished, each answered 202 only once
  confirmed; nothing it accepted is lost.
- verifier: messages in the middle of a (slowed) Redis write are finished or returned to the queue;
  the next verifier counts every one exactly once.
- status API: open live streams (SSE) are ended, so the process exits instead of waiting on them.

Every process must exit with code 0 within the harness's bound (15 s); the seconds it took are in the
report.
"""

from __future__ import annotations

import asyncio

import aiohttp
import redis.asyncio as aioredis

from tests.faults.harness import TOKEN, Services
from tests.faults.ledger import Ledger, Sender, counted_events, wait_stored, write_report
from tests.faults.proxy import FaultProxy

COMMAND = ".venv/bin/python -m pytest tests/faults/test_shutdown.py -q"


async def test_receiver_sigterm_finishes_in_flight_publishes(
    services: Services, amqp_proxy: FaultProxy, receiver_port: int, make_targets, prefix: str,
    redis_client: aioredis.Redis, session: aiohttp.ClientSession,
) -> None:
    receiver = services.make("receiver", AMQP_URL=amqp_proxy.url(services.env["AMQP_URL"]))
    receiver.port = receiver_port
    await receiver.start()
    await services.start("verifier")
    targets = await make_targets(2)
    ledger = Ledger("shutdown_receiver")
    sender = Sender(session, ledger, targets)
    assert await sender.send(targets[0], "evt-term-warmup") == 202  # channel and topology ready
    amqp_proxy.delay(0.3)  # every publish now takes a while: SIGTERM lands in the middle of them
    in_flight = 32  # the sender's concurrency: all of them are on the wire when SIGTERM lands
    batch = asyncio.create_task(
        sender.send_many([(targets[i % 2], f"evt-term-{i}") for i in range(in_flight)])
    )
    await asyncio.sleep(0.5)
    code, took_s = await receiver.terminate()
    await batch
    amqp_proxy.restore()
    await wait_stored(redis_client, prefix, targets, len(ledger.accepted_events), timeout_s=20)
    ledger.extra.update(exit_code=code, exit_seconds=round(took_s, 2))
    figures = await ledger.reconcile(redis_client, prefix, targets)
    ledger.write(COMMAND)
    print(ledger.summary())
    assert code == 0, receiver.logs()[-2000:]
    assert figures["accepted"] == in_flight + 1, f"SIGTERM cut requests in flight: {ledger.summary()}"
    assert '"level":"error"' not in receiver.logs(), receiver.logs()[-2000:]
    ledger.assert_clean()


async def test_verifier_sigterm_returns_what_it_holds(
    services: Services, redis_proxy: FaultProxy, receiver_port: int, make_targets, prefix: str,
    redis_client: aioredis.Redis, session: aiohttp.ClientSession,
) -> None:
    receiver = services.make("receiver")
    receiver.port = receiver_port
    await receiver.start()
    targets = await make_targets(2)
    ledger = Ledger("shutdown_verifier")
    sender = Sender(session, ledger, targets)
    await sender.send_many([(targets[i % 2], f"evt-vterm-{i}") for i in range(1000)])  # queued, no verifier
    redis_proxy.delay(0.2)
    slow = await services.start("verifier", REDIS_URL=redis_proxy.url(services.env["REDIS_URL"]), PREFETCH="32")
    await wait_stored(redis_client, prefix, targets, 1, timeout_s=20)
    code, took_s = await slow.terminate()
    counted_by_first = await counted_events(redis_client, prefix, targets)
    redis_proxy.restore()
    await services.start("verifier")
    stored = await wait_stored(redis_client, prefix, targets, len(ledger.accepted_events), timeout_s=30)
    await asyncio.sleep(1)
    ledger.extra.update(exit_code=code, exit_seconds=round(took_s, 2), counted_before_exit=counted_by_first)
    await ledger.reconcile(redis_client, prefix, targets)
    ledger.write(COMMAND)
    print(ledger.summary())
    assert code == 0, slow.logs()[-2000:]
    assert 0 < counted_by_first < 1000, "the first verifier was not stopped mid-queue"
    assert stored == 1000
    ledger.assert_clean()


async def test_status_api_sigterm_closes_live_streams(
    services: Services, make_targets, session: aiohttp.ClientSession,
) -> None:
    api = await services.start("status_api")
    await make_targets(1, account_id="acct-stream")
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/event-stream"}
    streams = [await session.get(f"{api.url}/v1/accounts/acct-stream/stream", headers=headers) for _ in range(3)]
    for resp in streams:
        assert resp.status == 200
        assert "event: ready" in await _read_until(resp, "event: ready")
    code, took_s = await api.terminate()
    ended = []
    for resp in streams:
        await asyncio.wait_for(resp.content.read(), 10)  # EOF: the server ended the stream
        ended.append(resp.content.at_eof())
        resp.release()
    write_report("shutdown_status_api", {"streams_open": len(streams), "streams_ended": sum(ended),
                                         "exit_code": code, "exit_seconds": round(took_s, 2),
                                         "command": COMMAND})
    assert code == 0, api.logs()[-2000:]
    assert all(ended)


async def _read_until(resp: aiohttp.ClientResponse, marker: str) -> str:
    seen = ""
    while marker not in seen:
        chunk = await asyncio.wait_for(resp.content.readany(), 10)
        assert chunk, f"stream ended before {marker!r}: {seen!r}"
        seen += chunk.decode()
    return seen
