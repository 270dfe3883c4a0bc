"""Load shedding: while the broker's confirms lag (here: its connection held silent by the fault proxy),
the receiver answers new webhooks 503 ``overloaded`` with ``Retry-After`` at once, before reading them,
instead of letting each wait for its own confirm; the ones it admitted are answered 202 once confirmed,
and every 202 is counted exactly once.

Tiny bounds (``SHED_IN_FLIGHT`` 8, ``SHED_CONFIRM_WAIT_S`` 0.5) make the overload easy to cause; the
proxy holds the broker connection for a few seconds only (well under the heartbeat's ~18 s), so the
connection survives and what was held is confirmed when it is released.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from tests.faults.harness import Services
from tests.faults.ledger import Ledger, Sender, Target, signed, wait_stored
from tests.faults.proxy import FaultProxy

IN_FLIGHT = 8
COMMAND = ".venv/bin/python -m pytest tests/faults/test_overload.py -q"


async def _post(session: aiohttp.ClientSession, ledger: Ledger, target: Target, event_id: str
                ) -> tuple[int, dict[str, Any], dict[str, str], float]:
    """One webhook: its status, JSON body, headers and how long the answer took (recorded in the ledger)."""
    body, headers = signed(target, event_id)
    started = time.monotonic()
    async with session.post(target.url, data=body, headers=headers,
                            timeout=aiohttp.ClientTimeout(total=30)) as resp:
        data = await resp.json()
        answer = (resp.status, data, dict(resp.headers), time.monotonic() - started)
    ledger.record(event_id, target.cid, resp.status)
    return answer


async def _shed_count(session: aiohttp.ClientSession, admin_url: str) -> dict[str, float]:
    async with session.get(admin_url + "/metrics") as resp:
        text = await resp.text()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("hookstatus_webhooks_shed_total{"):
            labels, _, value = line.rpartition(" ")
            found[labels.split('reason="', 1)[1].split('"', 1)[0]] = float(value)
    return found


async def test_the_receiver_sheds_load_while_confirms_lag_and_loses_no_202(
    services: Services, amqp_proxy: FaultProxy, receiver_port: int, make_targets, prefix: str,  # type: ignore[no-untyped-def]
    redis_client: aioredis.Redis, session: aiohttp.ClientSession,
) -> None:
    receiver = services.make("receiver", AMQP_URL=amqp_proxy.url(services.env["AMQP_URL"]), PUBLISH_TIMEOUT_S="20",
                             SHED_IN_FLIGHT=str(IN_FLIGHT), SHED_CONFIRM_WAIT_S="0.5")
    receiver.port = receiver_port
    await receiver.start()
    await services.start("verifier")  # on the real broker: it stores whatever was confirmed
    targets = await make_targets(4)
    ledger = Ledger("overload")

    # Normal times, within the bounds: nothing is shed.
    for start in range(0, 20, 4):
        normal = await asyncio.gather(*(_post(session, ledger, targets[i % 4], f"evt-ok-{i}")
                                        for i in range(start, start + 4)))
        assert {status for status, *_ in normal} == {202}

    # 1. Too many in flight: the broker connection is held silent, and a wave arrives at once.
    amqp_proxy.blackhole()
    wave = [asyncio.create_task(_post(session, ledger, targets[i % 4], f"evt-wave-{i}")) for i in range(40)]
    await asyncio.sleep(2.0)
    answered = [t.result() for t in wave if t.done()]
    # Every one past the bound was answered 503 overloaded, at once, while the admitted ones still wait.
    assert len(answered) == 40 - IN_FLIGHT, [a[:2] for a in answered]
    for status, data, headers, took in answered:
        assert status == 503 and data["error"]["code"] == "overloaded", data
        assert data["error"]["reason"] in ("in_flight", "confirm_wait")
        assert headers.get("Retry-After") == "1"
        assert took < 1.5, f"a shed webhook waited {took:.2f}s"
    amqp_proxy.restore()
    admitted = await asyncio.gather(*wave)
    assert sum(1 for status, *_ in admitted if status == 202) == IN_FLIGHT, [a[:2] for a in admitted]

    # 2. Confirms lagging: two webhooks wait (below the in-flight bound), and once the older has waited
    # past SHED_CONFIRM_WAIT_S even a lone webhook is shed.
    amqp_proxy.blackhole()
    waiting = [asyncio.create_task(_post(session, ledger, targets[i], f"evt-slow-{i}")) for i in range(2)]
    await asyncio.sleep(1.0)
    assert not any(t.done() for t in waiting)
    status, data, headers, took = await _post(session, ledger, targets[2], "evt-lone")
    assert (status, data["error"]["code"], data["error"]["reason"]) == (503, "overloaded", "confirm_wait"), data
    amqp_proxy.restore()
    assert [a[0] for a in await asyncio.gather(*waiting)] == [202, 202]

    shed = await _shed_count(session, receiver.admin_url)
    assert sum(shed.values()) == 40 - IN_FLIGHT + 1 and shed["confirm_wait"] >= 1, shed
    # Once the confirms flow again, nothing is shed: the provider's retries are all accepted.
    retries = await Sender(session, ledger, targets).retry_refused()
    assert not ledger.refused_events, ledger.summary()
    stored = await wait_stored(redis_client, prefix, targets, len(ledger.accepted_events))
    await asyncio.sleep(1)  # anything wrongly counted twice has time to land
    ledger.extra.update(shed=shed, retries=retries)
    figures = await ledger.reconcile(redis_client, prefix, targets)
    ledger.write(COMMAND)
    assert stored == len(ledger.accepted_events) == 20 + 40 + 2 + 1, ledger.summary()
    assert figures["unanswered"] == 0 and set(ledger.statuses) == {202, 503}, ledger.summary()
    ledger.assert_clean()
