"""Every hop of a test, live: received, verified or rejected, queued, consumed, stored, pushed, recorded by
the real receiver, verifier and status API, shown in the test object and on the live stream, and said in
plain words when the test fails."""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import statistics
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from hookstatus_client import HookStatusClient, StreamEvent
from services.status_api.presentation import HOPS, view_of_hops
from shared import lua
from tests.signing import standard_webhooks_headers
from tests.system import TOKEN, System

EVENT = orjson.dumps({"type": "ping"})
GUARD_S = 20  # against hanging only
ORDER = ("received", "verified", "queued", "consumed", "stored", "pushed")


def _stranger_secret() -> str:
    """A well-formed signing secret no connection has."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


async def _post(system: System, conn: dict[str, Any], secret: str | None = None) -> int:
    headers = standard_webhooks_headers(secret or conn["secret"], EVENT, f"msg_{uuid.uuid4().hex}")
    status, _ = await system.post_hook(conn["webhook_url"], EVENT, headers)
    return status


async def _views(events: AsyncIterator[StreamEvent]) -> AsyncIterator[dict[str, Any]]:
    async for event in events:
        if event.event == "connection":
            yield event.data


async def _hops(system: System, cid: str, last: str, timeout_s: float = 10) -> dict[str, Any]:
    view = await system.wait_for(cid, lambda v: ((v["last_test"] or {}).get("hops") or {}).get("last") == last,
                                 timeout_s)
    return view["last_test"]["hops"]  # type: ignore[no-any-return]


async def test_the_stream_shows_each_hop_of_a_passing_test_as_it_is_reached(system: System) -> None:
    conn = await system.create()
    async with HookStatusClient(system.api_url, TOKEN, session=system.session) as client, \
            asyncio.timeout(GUARD_S):
        views = _views(client.stream(connection_id=conn["id"]))
        await anext(views)
        test = await client.start_test(conn["id"])
        assert test["hops"]["last"] is None
        assert test["hops"]["message"] == "Nothing has reached the receiver yet."
        assert (await anext(views))["last_test"]["hops"]["last"] is None

        # With the verifier held back, the stream shows the receiver's hops before the verifier's.
        await system.stop_verifiers()
        assert await _post(system, conn) == 202
        seen: list[dict[str, Any]] = []
        async for view in views:
            seen.append(view["last_test"]["hops"])
            if seen[-1]["last"] == "queued":
                break
        system.start_verifier()
        async for view in views:
            seen.append(view["last_test"]["hops"])
            if seen[-1]["last"] == "pushed":
                break
        final = seen[-1]
        times = [final[name] for name in ORDER]
        assert all(times), final
        assert times == sorted(times), final  # each hop after the one before (one machine's clocks)
        assert final["rejected"] is None and final["rejected_reason"] is None
        assert final["message"] == ("Reached every hop: received, verified, queued, consumed by the verifier, "
                                    "stored and pushed to live pages.")
        queued = next(h for h in seen if h["last"] == "queued")
        assert queued["consumed"] is None and queued["received"] == final["received"]
        assert [h["delivery_id"] for h in seen] == [final["delivery_id"]] * len(seen)

        again = await client.get_test(conn["id"], test["id"])
        assert again["state"] == "passed"
        assert again["hops"] == final


async def test_with_the_verifier_stopped_the_test_shows_it_was_queued_but_not_consumed(system: System) -> None:
    conn = await system.create()
    await system.stop_verifiers()
    status, test = await system.api("POST", f"/v1/connections/{conn['id']}/tests")
    assert status == 201
    assert await _post(system, conn) == 202
    hops = await _hops(system, conn["id"], "queued")
    assert hops["received"] and hops["verified"] and hops["queued"]
    assert hops["consumed"] is None and hops["stored"] is None and hops["pushed"] is None
    assert hops["message"] == "Received, verified and queued; not consumed by the verifier yet."
    assert (await system.get(conn["id"]))["last_test"]["state"] == "waiting"

    system.start_verifier()
    hops = await _hops(system, conn["id"], "pushed")
    assert hops["consumed"] >= hops["queued"]
    _, passed = await system.api("GET", f"/v1/connections/{conn['id']}/tests/{test['id']}")
    assert passed["state"] == "passed"


async def test_a_failed_test_says_it_reached_the_receiver_and_was_rejected(system: System) -> None:
    conn = await system.create()
    wrong = _stranger_secret()
    status, test = await system.api("POST", f"/v1/connections/{conn['id']}/tests", json={"timeout_s": 2})
    assert status == 201
    assert await _post(system, conn, secret=wrong) == 401
    view = await system.wait_for(conn["id"], lambda v: v["last_test"]["state"] == "failed")
    hops = view["last_test"]["hops"]
    assert hops["received"] and hops["rejected"] and hops["verified"] is None
    assert hops["rejected_reason"] == "signature_mismatch"
    assert hops["stored"] is not None  # a rejected delivery is recorded too
    assert hops["message"].startswith("Reached the receiver, but was rejected: signature mismatch.")
    assert "signing secret" in hops["message"]


async def test_a_failed_test_says_nothing_reached_the_receiver(system: System) -> None:
    conn = await system.create()
    status, _ = await system.api("POST", f"/v1/connections/{conn['id']}/tests", json={"timeout_s": 1})
    assert status == 201
    view = await system.wait_for(conn["id"], lambda v: v["last_test"]["state"] == "failed")
    hops = view["last_test"]["hops"]
    assert hops["last"] is None
    assert all(hops[name] is None for name in HOPS)
    assert hops["message"] == "Nothing reached the receiver: no request for this connection arrived during the test."


async def test_the_window_follows_the_verified_delivery_after_a_rejected_one(system: System) -> None:
    conn = await system.create()
    wrong = _stranger_secret()
    _, first = await system.api("POST", f"/v1/connections/{conn['id']}/tests")
    assert await _post(system, conn, secret=wrong) == 401
    rejected = await _hops(system, conn["id"], "pushed")
    assert rejected["rejected_reason"] == "signature_mismatch"
    assert await _post(system, conn) == 202
    view = await system.wait_for(conn["id"], lambda v: v["last_test"]["hops"]["verified"] is not None
                                 and v["last_test"]["hops"]["last"] == "pushed")
    verified = view["last_test"]["hops"]
    assert verified["delivery_id"] != rejected["delivery_id"]
    assert verified["rejected"] is None and verified["rejected_reason"] is None
    # A replaced window keeps its hops in the archive.
    _, second = await system.api("POST", f"/v1/connections/{conn['id']}/tests")
    _, old = await system.api("GET", f"/v1/connections/{conn['id']}/tests/{first['id']}")
    assert old["hops"] == verified
    assert second["hops"]["last"] is None


async def test_a_repeated_event_says_so_and_the_next_event_passes_the_test(system: System) -> None:
    conn = await system.create()
    msg_id = f"msg_{uuid.uuid4().hex}"
    signed = standard_webhooks_headers(conn["secret"], EVENT, msg_id)
    status, _ = await system.post_hook(conn["webhook_url"], EVENT, signed)
    assert status == 202
    await system.wait_for(conn["id"], lambda v: v["events_received"] == 1)
    _, test = await system.api("POST", f"/v1/connections/{conn['id']}/tests")
    # The provider retries the same event (same id) while the window is open: accepted, counted once.
    again = standard_webhooks_headers(conn["secret"], EVENT, msg_id)
    status, _ = await system.post_hook(conn["webhook_url"], EVENT, again)
    assert status == 202
    view = await system.wait_for(conn["id"], lambda v: v["last_test"]["hops"]["duplicate"])
    repeat = view["last_test"]["hops"]
    assert repeat["queued"] and repeat["consumed"] and repeat["stored"] is None
    assert repeat["last"] == "consumed"
    assert "repeats an event already received" in repeat["message"]
    assert view["last_test"]["state"] == "waiting" and view["events_received"] == 1

    assert await _post(system, conn) == 202  # a new event passes, and the hops follow it
    view = await system.wait_for(conn["id"], lambda v: v["last_test"]["state"] == "passed"
                                 and v["last_test"]["hops"]["last"] == "pushed")
    hops = view["last_test"]["hops"]
    assert hops["delivery_id"] != repeat["delivery_id"] and not hops["duplicate"]
    assert view["last_test"]["id"] == test["id"]


async def test_the_time_between_hops_is_printed(system: System, capsys: pytest.CaptureFixture[str]) -> None:
    """How long each step takes, from the hops of 15 test events (printed, not asserted: a loaded
    machine is slower, and that is not a defect)."""
    conn = await system.create()
    steps: dict[str, list[int]] = {}
    for _ in range(15):
        await system.api("POST", f"/v1/connections/{conn['id']}/tests")
        assert await _post(system, conn) == 202
        hops = await _hops(system, conn["id"], "pushed")
        times = [_ms(hops[name]) for name in ORDER]
        for (before, after), (t0, t1) in zip(itertools.pairwise(ORDER), itertools.pairwise(times), strict=True):
            steps.setdefault(f"{before}->{after}", []).append(t1 - t0)
        steps.setdefault("received->pushed", []).append(times[-1] - times[0])
    with capsys.disabled():
        print("\ntest hops, ms (min / median / max of 15):",
              ", ".join(f"{name} {min(v)}/{statistics.median(v):.0f}/{max(v)}" for name, v in steps.items()))


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


async def test_no_redis_call_for_hops_when_no_test_window_is_open(
    system: System, redis_url: str, redis_client: aioredis.Redis
) -> None:
    """The receiver's hop script runs only for a connection with an open window: ordinary webhooks cost
    no extra Redis round trip (watched on the real Redis with MONITOR)."""
    plain, tested = await system.create(), await system.create()
    assert await _post(system, plain) == 202  # both cached and connected before watching
    assert await _post(system, tested) == 202
    await system.wait_for(tested["id"], lambda v: v["state"] == "connected")
    await system.wait_for(plain["id"], lambda v: v["state"] == "connected")
    await system.api("POST", f"/v1/connections/{tested['id']}/tests")
    sha = await redis_client.script_load(lua.source("test_hop"))
    commands: list[str] = []
    watcher = aioredis.Redis.from_url(redis_url, decode_responses=True)
    async with watcher.monitor() as monitor:
        async def watch() -> None:
            while True:
                info = await monitor.next_command()
                commands.append(str(info.get("command", "")))

        task = asyncio.create_task(watch())
        await asyncio.sleep(0.2)
        for _ in range(3):
            assert await _post(system, plain) == 202
        assert await _post(system, tested) == 202
        await _hops(system, tested["id"], "pushed")
        await asyncio.sleep(0.2)
        task.cancel()
    await watcher.aclose()
    hop_calls = [c for c in commands if c.startswith(f"EVALSHA {sha}")]
    assert [c for c in hop_calls if plain["id"] in c] == []
    # The receiver's hops (one call) and one status API's pushed hop.
    assert len([c for c in hop_calls if tested["id"] in c]) == 2, hop_calls


def test_the_words_name_the_furthest_hop() -> None:
    at = 1_800_000_000_000
    received = {"delivery_id": "d", "outcome": "verified", "received": at}
    assert view_of_hops({}, True)["message"] == "Nothing has reached the receiver yet."
    assert view_of_hops(received, True)["message"] == "Received; not verified yet."
    checked = {**received, "checked": at + 1}
    assert view_of_hops(checked, True)["last"] == "verified"
    stored = {**checked, "queued": at + 2, "consumed": at + 3, "stored": at + 4}
    assert view_of_hops(stored, False)["message"] == ("Received, verified, queued, consumed by the verifier and "
                                                     "stored; not pushed to live pages yet.")
    rejected = {"delivery_id": "d", "outcome": "rejected", "reason": "timestamp_too_old", "received": at,
                "checked": at, "stored": at + 5}
    view = view_of_hops(rejected, False)
    assert (view["verified"], view["last"], view["rejected_reason"]) == (None, "stored", "timestamp_too_old")
    assert view["message"].startswith("Reached the receiver, but was rejected: timestamp too old. Deliveries are "
                                      "signed too long ago")
    echo = {"delivery_id": "d", "outcome": "reachable", "received": at, "checked": at}
    assert "proves the URL, not the signing secret" in view_of_hops(echo, True)["message"]
