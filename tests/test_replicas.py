"""Many replicas: two receivers and three verifiers on one broker and one Redis end in the same state a
single replica would, count nothing twice, and sweep every timed-out connection exactly once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import REGISTRY

from services.receiver.app import create_app as create_receiver
from services.receiver.config import Settings as ReceiverSettings
from shared.keys import Keys
from tests.signing import standard_webhooks_headers
from tests.system import System, free_port

CONNECTED, SILENT, BAD = 12, 8, 4
EVENT = orjson.dumps({"type": "invoice.paid", "data": {"amount": 1}})


def transitions(frm: str, to: str) -> float:
    labels = {"from_state": frm, "to_state": to}
    return REGISTRY.get_sample_value("hookstatus_state_transitions_total", labels) or 0.0


@pytest.fixture
async def second_receiver(system: System) -> AsyncIterator[str]:
    runner = web.AppRunner(create_receiver(ReceiverSettings.from_env(**system.common)))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def post(system: System, base: str, conn: dict[str, Any], secret: str, msg_id: str) -> int:
    url = f"{base}/hooks/{conn['id']}"
    status, _ = await system.post_hook(url, EVENT, standard_webhooks_headers(secret, EVENT, msg_id))
    return status


async def listen_changes(client: aioredis.Redis, channel: str, sink: list[dict[str, Any]]) -> None:
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    try:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                sink.append(orjson.loads(message["data"]))
    finally:
        await pubsub.aclose()


def entries(changes: list[dict[str, Any]]) -> dict[str, list[str]]:
    """state -> ids, once per time a connection entered that state (changes ordered by version)."""
    entered: dict[str, list[str]] = {}
    last: dict[str, str] = {}
    for change in sorted(changes, key=lambda c: (c["id"], c["version"])):
        if last.get(change["id"]) != change["state"]:
            entered.setdefault(change["state"], []).append(change["id"])
        last[change["id"]] = change["state"]
    return entered


async def wait_all(
    system: System, ids: list[str], predicate: Any, timeout_s: float = 20
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        views = [await system.get(cid) for cid in ids]
        if all(predicate(v) for v in views):
            return views
        assert time.monotonic() < deadline, [v for v in views if not predicate(v)][:2]
        await asyncio.sleep(0.1)


async def test_two_receivers_three_verifiers_same_state_no_double_counting(
    system: System, second_receiver: str, redis_client: aioredis.Redis
) -> None:
    keys = Keys(system.common["redis_prefix"])
    changes: list[dict[str, Any]] = []
    listener = asyncio.create_task(listen_changes(redis_client, keys.changes, changes))
    system.start_verifier()
    system.start_verifier()
    assert len(system.verifiers) == 3
    receivers = [system.receiver_url, second_receiver]
    before = {pair: transitions(*pair) for pair in
              [("pending", "connected"), ("pending", "failed"), ("none", "pending")]}

    live = [await system.create(timeout_s=600) for _ in range(CONNECTED)]
    silent = [await system.create(timeout_s=1) for _ in range(SILENT)]
    bad = [await system.create(timeout_s=1) for _ in range(BAD)]
    wrong = (await system.create())["secret"]

    sends = []
    for conn in live:
        same = f"msg_{uuid.uuid4().hex}"
        # one event delivered twice, once through each receiver (a provider retry), and two more
        sends += [post(system, r, conn, conn["secret"], same) for r in receivers]
        sends += [post(system, receivers[i], conn, conn["secret"], f"msg_{uuid.uuid4().hex}") for i in range(2)]
    for conn in bad:
        sends += [post(system, r, conn, wrong, f"msg_{uuid.uuid4().hex}") for r in receivers]
    statuses = await asyncio.gather(*sends)
    assert statuses.count(202) == CONNECTED * 4 and statuses.count(401) == BAD * 2

    views = await wait_all(system, [c["id"] for c in live], lambda v: v["events_received"] == 3)
    assert {v["state"] for v in views} == {"connected"}
    failed = await wait_all(system, [c["id"] for c in silent + bad], lambda v: v["state"] == "failed")
    assert [v["reason"] for v in failed] == ["deadline_no_events"] * SILENT + ["deadline_bad_signatures"] * BAD
    for conn in live:
        _, data = await system.api("GET", f"/v1/connections/{conn['id']}/deliveries")
        assert len(data["deliveries"]) == 3  # the duplicate is not listed

    await asyncio.sleep(1.0)  # several more sweep ticks on three verifiers: nothing may fail twice
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)

    entered = entries(changes)
    # each timed-out connection failed exactly once, none missed; each live one connected once
    assert sorted(entered["failed"]) == sorted(c["id"] for c in silent + bad)
    assert sorted(entered["connected"]) == sorted(c["id"] for c in live)
    assert transitions("pending", "connected") - before[("pending", "connected")] == CONNECTED
    assert transitions("pending", "failed") - before[("pending", "failed")] == SILENT + BAD
    assert transitions("none", "pending") - before[("none", "pending")] == CONNECTED + SILENT + BAD + 1
    counts = await redis_client.hgetall(keys.state_counts)
    assert {k: int(v) for k, v in counts.items()} == {
        "pending": 1, "connected": CONNECTED, "failed": SILENT + BAD}
