"""The two changes channels: a delivery that leaves a connected connection connected (an event counted,
the common case) is published on the quiet one, which only the status API's streams follow; every other
change on ``changes``, which the receivers' caches follow too. Real Redis, real scripts, the real hub."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import redis.asyncio as aioredis

from services.status_api.hub import Change, running_hub
from shared.models import DeliveryMessage, new_id, now_ms
from shared.records import ConnectionRecord
from shared.store import Store


async def _collect(client: aioredis.Redis, channels: list[str], sink: list[tuple[str, dict[str, Any]]],
                   ready: asyncio.Event) -> None:
    async with client.pubsub(ignore_subscribe_messages=True) as ps:
        await ps.subscribe(*channels)
        ready.set()
        while True:
            message = await ps.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                sink.append((message["channel"], orjson.loads(message["data"])))


def _delivery(cid: str, outcome: str, **fields: Any) -> DeliveryMessage:
    return DeliveryMessage(new_id(), cid, "standard-webhooks", now_ms(), outcome, **fields)  # type: ignore[arg-type]


async def test_an_event_counted_goes_to_the_quiet_channel_and_a_state_change_does_not(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    store = Store(redis_client, prefix)
    cid = new_id()
    await store.create(ConnectionRecord(id=cid, account_id="acct-quiet", provider="standard-webhooks",
                                        state="pending", reason="awaiting_first_event", webhook_url="http://x",
                                        secret="whsec_c2hvd24tc2VjcmV0", pending_deadline_ms=now_ms() + 60_000,
                                        version=1, created_at_ms=now_ms()))
    heard: list[tuple[str, dict[str, Any]]] = []
    ready = asyncio.Event()
    listener = asyncio.create_task(_collect(redis_client, [store.keys.changes, store.keys.changes_quiet], heard,
                                            ready))
    await ready.wait()
    async with running_hub(store, 16) as hub:
        inbox = hub.listen("acct-quiet", None)
        results = await store.apply_deliveries([_delivery(cid, "verified", event_id="evt-1")])  # pending -> connected
        results += await store.apply_deliveries([_delivery(cid, "verified", event_id="evt-2")])  # counted: quiet
        results += await store.apply_deliveries([_delivery(cid, "rejected", reason="signature_mismatch",
                                                           message="no")])  # recorded, still connected: quiet
        assert [r.status for r in results] == ["applied"] * 3  # type: ignore[union-attr]
        deadline = asyncio.get_running_loop().time() + 5
        while len(heard) < 3 or inbox.queue.qsize() < 3:
            assert asyncio.get_running_loop().time() < deadline, (heard, inbox.queue.qsize())
            await asyncio.sleep(0.02)
        streamed = [inbox.queue.get_nowait() for _ in range(3)]
    listener.cancel()
    channels = [(channel, note["version"], note["state"]) for channel, note in heard]
    base = channels[0][1]
    assert channels == [(store.keys.changes, base, "connected"), (store.keys.changes_quiet, base + 1, "connected"),
                        (store.keys.changes_quiet, base + 2, "connected")]
    # The status API's hub follows both: its streams hear all three.
    assert streamed == [Change(cid, "acct-quiet", base + i) for i in range(3)]
