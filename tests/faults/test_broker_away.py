"""RabbitMQ goes away (connections reset, then a broker that hangs) while webhooks stream in.

The receiver must answer 503 with Retry-After for anything it could not get confirmed, never 202;
reconnect by itself once the broker is back; and every event it accepted must end up stored once.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import redis.asyncio as aioredis

from tests.faults.harness import Services
from tests.faults.ledger import Ledger, Sender, wait_stored
from tests.faults.proxy import FaultProxy

EVENTS = 2400
COMMAND = ".venv/bin/python -m pytest tests/faults/test_broker_away.py -q"


async def test_broker_away_while_webhooks_stream_in(
    services: Services, amqp_proxy: FaultProxy, receiver_port: int, make_targets, prefix: str,
    redis_client: aioredis.Redis, session: aiohttp.ClientSession,
) -> None:
    via_proxy = amqp_proxy.url(services.env["AMQP_URL"])
    receiver = services.make("receiver", AMQP_URL=via_proxy, PUBLISH_TIMEOUT_S="1")
    receiver.port = receiver_port
    await receiver.start()
    await services.start("verifier", AMQP_URL=via_proxy)
    targets = await make_targets(4)
    ledger = Ledger("broker_away")
    sender = Sender(session, ledger, targets)
    items = [(targets[i % len(targets)], f"evt-broker-{i}") for i in range(EVENTS)]

    stream = asyncio.create_task(_stream(sender, items))
    await _until(lambda: ledger.accepted >= EVENTS // 5)
    amqp_proxy.cut()  # every AMQP connection reset; new ones refused
    cut_at = ledger.sent
    await asyncio.sleep(3)
    during_cut = dict(ledger.statuses)
    amqp_proxy.blackhole()  # connections accepted, nothing ever answered
    await asyncio.sleep(3)
    amqp_proxy.restore()
    await stream

    # The receiver came back by itself: a fresh request is accepted without restarting anything.
    await _until(lambda: _fresh_accepted(ledger), timeout_s=30, action=lambda: sender.send(targets[0], _fresh_id()))
    retries = await sender.retry_refused()
    stored = await wait_stored(redis_client, prefix, targets, len(ledger.accepted_events))
    await asyncio.sleep(1)  # anything wrongly counted twice has time to land
    ledger.extra.update(
        events=EVENTS, retries_after_restore=retries, refused_503=ledger.statuses[503],
        sent_before_cut=cut_at, statuses_while_cut=during_cut,
    )
    figures = await ledger.reconcile(redis_client, prefix, targets)
    ledger.write(COMMAND)
    print(ledger.summary())
    assert stored >= len(ledger.accepted_events)
    assert ledger.statuses[503] > 0, f"the outage never showed: {ledger.summary()}"
    assert set(ledger.statuses) <= {202, 503}, ledger.summary()
    assert figures["unanswered"] == 0, ledger.summary()
    assert not ledger.refused_events, f"events never accepted after restore: {ledger.summary()}"
    ledger.assert_clean()


async def _stream(sender: Sender, items: list) -> None:  # type: ignore[type-arg]
    """Send in waves of about 200 events a second, so the stream spans the whole outage."""
    wave = 40
    for start in range(0, len(items), wave):
        await asyncio.gather(sender.send_many(items[start : start + wave]), asyncio.sleep(0.2))


_counter = iter(range(10**9))


def _fresh_id() -> str:
    return f"evt-broker-fresh-{next(_counter)}"


def _fresh_accepted(ledger: Ledger) -> bool:
    return any(e.startswith("evt-broker-fresh-") for e in ledger.accepted_events)


async def _until(predicate, timeout_s: float = 30, action=None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        if action is not None:
            await action()
        await asyncio.sleep(0.1)
