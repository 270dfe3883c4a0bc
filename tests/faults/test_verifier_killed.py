"""The verifier is SIGKILLed twice in the middle of a stream of thousands of deliveries.

Whatever it held unacked comes back from the broker to the next verifier; whatever it had stored but
not yet acked comes back too and must be recognised as a duplicate. Every accepted event is counted
exactly once.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import redis.asyncio as aioredis

from shared.keys import Keys
from tests.faults.harness import Services
from tests.faults.ledger import Ledger, Sender, Target, consumed_by_result, wait_stored

EVENTS = 3000
KILL_AT = (EVENTS // 5, EVENTS * 3 // 5)
COMMAND = ".venv/bin/python -m pytest tests/faults/test_verifier_killed.py -q"


async def test_verifier_sigkilled_mid_stream_counts_every_event_once(
    services: Services, receiver_port: int, make_targets, prefix: str,
    redis_client: aioredis.Redis, session: aiohttp.ClientSession,
) -> None:
    receiver = services.make("receiver")
    receiver.port = receiver_port
    await receiver.start()
    verifier = await services.start("verifier", PREFETCH="256")
    targets = await make_targets(4)
    ledger = Ledger("verifier_sigkill")
    sender = Sender(session, ledger, targets, concurrency=48)
    items = [(targets[i % len(targets)], f"evt-kill-{i}") for i in range(EVENTS)]
    stream = asyncio.create_task(sender.send_many(items))

    kills = []
    for threshold in KILL_AT:
        stored_then = await _wait_counted(redis_client, prefix, targets, threshold)
        verifier.kill()
        kills.append({"stored_when_killed": stored_then, "accepted_when_killed": ledger.accepted})
        await asyncio.sleep(0.5)  # deliveries pile up in the queue while no verifier runs
        await verifier.start()
    await stream
    retries = await sender.retry_refused()
    stored = await wait_stored(redis_client, prefix, targets, len(ledger.accepted_events), timeout_s=60)
    await asyncio.sleep(1)  # redeliveries of the killed verifiers' messages have time to land
    ledger.extra.update(events=EVENTS, kills=kills, verifier_starts=verifier.starts,
                        kill_exit_codes=verifier.exit_codes, retries=retries,
                        last_verifier_results=await consumed_by_result(session, verifier.url))
    figures = await ledger.reconcile(redis_client, prefix, targets)
    ledger.write(COMMAND)
    print(ledger.summary())
    assert verifier.exit_codes == [-9, -9]
    assert stored == len(ledger.accepted_events), ledger.summary()
    assert figures["accepted"] >= EVENTS and figures["unanswered"] == 0, ledger.summary()
    ledger.assert_clean()


async def _wait_counted(redis: aioredis.Redis, prefix: str, targets: list[Target], at_least: int) -> int:
    keys = Keys(prefix)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        total = sum([int(await redis.hget(keys.conn(t.cid), "events_received") or 0) for t in targets])
        if total >= at_least:
            return total
        await asyncio.sleep(0.02)
    raise AssertionError(f"the verifier never counted {at_least} events")
