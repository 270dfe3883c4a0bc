"""Redis goes away (connections reset, then a Redis that hangs) for the verifier and the status API.

The receiver keeps its own path to Redis, so webhooks keep being accepted and pile up in the queue.
The status API must answer 503 with a clear error; the verifier must stop acking (nothing is counted
while Redis is away) and resume by itself. Nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio

import aio_pika
import aiohttp
import redis.asyncio as aioredis

from tests.faults.harness import TOKEN, Services
from tests.faults.ledger import Ledger, Sender, Target, consumed_by_result, counted_events, wait_stored
from tests.faults.proxy import FaultProxy

EVENTS = 2000
COMMAND = ".venv/bin/python -m pytest tests/faults/test_redis_away.py -q"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_redis_away_status_api_503_and_verifier_holds(
    services: Services, redis_proxy: FaultProxy, receiver_port: int, make_targets, prefix: str,
    redis_client: aioredis.Redis, session: aiohttp.ClientSession, amqp_url: str,
) -> None:
    via_proxy = redis_proxy.url(services.env["REDIS_URL"])
    receiver = services.make("receiver")
    receiver.port = receiver_port
    await receiver.start()
    verifier = await services.start("verifier", REDIS_URL=via_proxy, STORE_RETRY_MAX_S="0.5", PREFETCH="64")
    api = await services.start("status_api", REDIS_URL=via_proxy)
    targets = await make_targets(4)
    ledger = Ledger("redis_away")
    sender = Sender(session, ledger, targets)
    items = [(targets[i % len(targets)], f"evt-redis-{i}") for i in range(EVENTS)]
    half = EVENTS // 2

    await sender.send_many(items[: half // 2])
    await wait_stored(redis_client, prefix, targets, half // 2)
    redis_proxy.cut()
    outage: dict[str, object] = {}
    counted_at_cut = await counted_events(redis_client, prefix, targets)
    await sender.send_many(items[half // 2 : half])  # accepted: the receiver's Redis is fine
    outage["api_while_cut"] = await _api_status(session, api.url, targets[0])
    await asyncio.sleep(1.5)
    outage["counted_during_cut"] = await counted_events(redis_client, prefix, targets) - counted_at_cut
    outage["queued_during_cut"] = await _queue_depth(amqp_url, prefix)

    redis_proxy.blackhole()
    await sender.send_many(items[half : half + half // 2])
    outage["api_while_blackholed"] = await _api_status(session, api.url, targets[0])
    redis_proxy.restore()
    await sender.send_many(items[half + half // 2 :])

    retries = await sender.retry_refused()
    stored = await wait_stored(redis_client, prefix, targets, len(ledger.accepted_events), timeout_s=60)
    await asyncio.sleep(1)
    api_after = await _api_status(session, api.url, targets[0])
    ledger.extra.update(events=EVENTS, retries=retries, api_after_restore=api_after[0],
                        verifier_results=await consumed_by_result(session, verifier.url), **outage)
    figures = await ledger.reconcile(redis_client, prefix, targets)
    ledger.write(COMMAND)
    print(ledger.summary())

    cut_status, cut_body = outage["api_while_cut"]  # type: ignore[misc]
    assert cut_status == 503, cut_body
    assert cut_body["error"]["code"] == "store_unavailable", cut_body
    assert outage["api_while_blackholed"][0] == 503  # type: ignore[index]
    assert outage["counted_during_cut"] == 0, "the verifier stored (and so acked) while Redis was away"
    assert outage["queued_during_cut"] > 0, "nothing waited in the queue: the verifier must have acked"
    assert api_after[0] == 200
    assert stored == len(ledger.accepted_events) and figures["unanswered"] == 0, ledger.summary()
    ledger.assert_clean()


async def _api_status(session: aiohttp.ClientSession, api_url: str, target: Target) -> tuple[int, object]:
    url = f"{api_url}/v1/connections/{target.cid}"
    async with session.get(url, headers=AUTH, timeout=aiohttp.ClientTimeout(total=20)) as resp:
        return resp.status, await resp.json(content_type=None)


async def _queue_depth(amqp_url: str, prefix: str) -> int:
    """Messages ready in the deliveries queue (beyond what the verifier holds unacked)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{prefix}.deliveries", passive=True)
        return int(queue.declaration_result.message_count or 0)


async def test_redis_away_for_the_receiver_is_503_never_202_unverified(
    services: Services, redis_proxy: FaultProxy, receiver_port: int, make_targets, prefix: str,
    redis_client: aioredis.Redis, session: aiohttp.ClientSession,
) -> None:
    """The receiver cannot look up a connection it has not seen while Redis is away: it answers 503
    with Retry-After (the provider retries), never a 202 it could not verify, and never a 500."""
    receiver = services.make("receiver", REDIS_URL=redis_proxy.url(services.env["REDIS_URL"]))
    receiver.port = receiver_port
    await receiver.start()
    await services.start("verifier")
    targets = await make_targets(2)
    ledger = Ledger("redis_away_receiver")
    sender = Sender(session, ledger, targets)
    redis_proxy.cut()
    await sender.send_many([(t, f"evt-rr-{i}-{t.cid[:6]}") for i in range(20) for t in targets])
    while_cut = dict(ledger.statuses)
    redis_proxy.restore()
    retries = await sender.retry_refused()
    await wait_stored(redis_client, prefix, targets, len(ledger.accepted_events), timeout_s=30)
    ledger.extra.update(statuses_while_cut=while_cut, retries=retries)
    await ledger.reconcile(redis_client, prefix, targets)
    ledger.write(COMMAND)
    print(ledger.summary())
    assert while_cut == {503: 40}, ledger.summary()
    assert not ledger.refused_events and ledger.accepted == 40, ledger.summary()
    ledger.assert_clean()
