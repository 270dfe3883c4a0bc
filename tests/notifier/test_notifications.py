"""The product's notifications end to end, on the real broker and Redis: transitions reach a real
HTTP receiver signed per Standard Webhooks (verified with the ``standardwebhooks`` package), retried
through the delay queues, logged, and an endpoint that keeps failing is disabled."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from standardwebhooks import Webhook

from tests.notifier.conftest import NOTIFIER, ProductReceiver, Received, attempts, register
from tests.signing import standard_webhooks_headers
from tests.system import System

EVENT = orjson.dumps({"type": "invoice.paid", "data": {"amount": 1200}})


async def send_verified(system: System, conn: dict[str, Any]) -> None:
    headers = standard_webhooks_headers(conn["secret"], EVENT, f"msg_{uuid.uuid4().hex}")
    status, reply = await system.post_hook(conn["webhook_url"], EVENT, headers)
    assert status == 202, reply


def verified(secret: str, received: Received) -> dict[str, Any]:
    """The event as the product would read it: only after its signature verified."""
    return Webhook(secret).verify(received.body, received.headers)  # type: ignore[no-any-return]


async def test_connected_failed_and_recovered_reach_the_product_signed(
    notified: System, product: ProductReceiver
) -> None:
    endpoint = await register(notified, product.url("all"))
    assert endpoint["secret"].startswith("whsec_")
    assert endpoint["status"] == "enabled" and endpoint["events"] is None and endpoint["account_id"] is None

    first = await notified.create()
    await send_verified(notified, first)
    got = await product.wait_event("all", "connection.connected", first["id"])
    event = verified(endpoint["secret"], got)
    assert event["type"] == "connection.connected"
    assert event["data"] == {**(await notified.get(first["id"])), "last_event_at": event["data"]["last_event_at"]}
    assert event["data"]["state"] == "connected" and "secret" not in event["data"]
    assert got.headers["webhook-id"].startswith("evt_")

    late = await notified.create(timeout_s=1)
    failed = verified(endpoint["secret"], await product.wait_event("all", "connection.failed", late["id"]))
    assert failed["data"]["state"] == "failed" and failed["data"]["reason"] == "deadline_no_events"

    await send_verified(notified, late)
    received = await product.wait_event("all", "connection.recovered", late["id"])
    recovered = verified(endpoint["secret"], received)
    assert recovered["data"]["state"] == "connected"
    # The attempt is logged after the endpoint answered: wait for this event's entry, not the newest one.
    log_entry = await wait_logged(notified, endpoint["id"], received.headers["webhook-id"])
    assert log_entry["outcome"] == "delivered" and log_entry["status"] == 200 and log_entry["attempt"] == 1


async def test_disconnect_failing_and_test_events(notified: System, product: ProductReceiver) -> None:
    endpoint = await register(notified, product.url("all"))
    conn = await notified.create()
    await send_verified(notified, conn)
    await product.wait_event("all", "connection.connected", conn["id"])

    other = (await notified.create())["secret"]
    for i in range(3):  # failing: sustained rejection without verified traffic (3 in a row)
        wrong = standard_webhooks_headers(other, EVENT, f"msg_wrong{i}")
        status, _ = await notified.post_hook(conn["webhook_url"], EVENT, wrong)
        assert status == 401
    failing = verified(endpoint["secret"], await product.wait_event("all", "connection.failing", conn["id"]))
    assert failing["data"]["display"] == "failing"

    status, test = await notified.api("POST", f"/v1/connections/{conn['id']}/tests", json={"timeout_s": 1})
    assert status == 201, test
    test_failed = await product.wait_event("all", "test.failed", conn["id"])
    assert verified(endpoint["secret"], test_failed)["data"]["reason"] == "test_no_events"

    status, _ = await notified.api("DELETE", f"/v1/connections/{conn['id']}")
    assert status == 200
    gone = verified(endpoint["secret"], await product.wait_event("all", "connection.disconnected", conn["id"]))
    assert gone["data"]["state"] == "disconnected"


async def test_an_endpoint_answering_500_twice_gets_three_attempts_and_one_delivery(
    notified: System, product: ProductReceiver
) -> None:
    product.answers["flaky"].extend([500, 500])
    endpoint = await register(notified, product.url("flaky"))
    conn = await notified.create()
    await send_verified(notified, conn)
    await product.wait_for(lambda: len(product.at("flaky")) == 3)

    ids = {r.headers["webhook-id"] for r in product.at("flaky")}
    assert len(ids) == 1, "every attempt of one event carries the event's id"
    for received in product.at("flaky"):
        assert verified(endpoint["secret"], received)["type"] == "connection.connected"
    log = await wait_attempts(notified, endpoint["id"], 3)
    assert [(a["attempt"], a["outcome"], a["status"]) for a in reversed(log)] == [
        (1, "failed", 500), (2, "failed", 500), (3, "delivered", 200)]
    assert log[2]["next_retry_at"] is not None and log[0]["next_retry_at"] is None
    status, view = await notified.api("GET", f"/v1/notification-endpoints/{endpoint['id']}")
    assert status == 200 and view["status"] == "enabled" and view["failed_events"] == 0


async def test_an_endpoint_that_keeps_failing_is_disabled(notified: System, product: ProductReceiver) -> None:
    product.always["down"] = 503
    endpoint = await register(notified, product.url("down"))
    per_event = len(NOTIFIER["notifier_retry_delays_s"].split(",")) + 1  # type: ignore[attr-defined]
    for _ in range(2):  # NOTIFIER_DISABLE_AFTER_FAILURES=2 events that fail every attempt
        await send_verified(notified, await notified.create())
    await wait_attempts(notified, endpoint["id"], 2 * per_event)

    status, view = await notified.api("GET", f"/v1/notification-endpoints/{endpoint['id']}")
    assert status == 200
    assert view["status"] == "disabled"
    assert "2 events in a row failed" in view["disabled_reason"]
    assert len(product.at("down")) == 2 * per_event

    witness = await register(notified, product.url("witness"))
    conn = await notified.create()
    await send_verified(notified, conn)  # fanned out to the witness, not to the disabled endpoint
    received = await product.wait_event("witness", "connection.connected", conn["id"])
    # The notifier logs an attempt only after the endpoint answered: wait for the witness's entry.
    await wait_logged(notified, witness["id"], received.headers["webhook-id"])
    assert len(product.at("down")) == 2 * per_event
    assert len(await attempts(notified, endpoint["id"])) == 2 * per_event
    assert len(await attempts(notified, witness["id"])) == 1


async def test_account_and_event_filters(notified: System, product: ProductReceiver) -> None:
    only_a = await register(notified, product.url("acct-a"), account_id="acct-a")
    only_failed = await register(notified, product.url("failed"), events=["connection.failed"])
    everything = await register(notified, product.url("all"))
    assert only_failed["events"] == ["connection.failed"] and only_a["account_id"] == "acct-a"

    b = await notified.create(account_id="acct-b")
    await send_verified(notified, b)
    await product.wait_event("all", "connection.connected", b["id"])
    a = await notified.create(account_id="acct-a", timeout_s=1)
    await product.wait_event("all", "connection.failed", a["id"])
    await product.wait_event("acct-a", "connection.failed", a["id"])
    await product.wait_event("failed", "connection.failed", a["id"])
    await wait_attempts(notified, everything["id"], 2)

    assert [r.event["data"]["id"] for r in product.at("acct-a")] == [a["id"]]
    assert [r.event["type"] for r in product.at("failed")] == ["connection.failed"]
    status, listed = await notified.api("GET", "/v1/notification-endpoints?account_id=acct-a")
    assert status == 200 and [e["id"] for e in listed["endpoints"]] == [only_a["id"]]


async def test_a_transition_stored_while_no_notifier_runs_is_sent_when_one_starts(
    notified: System, product: ProductReceiver
) -> None:
    await notified.stop_notifiers()
    endpoint = await register(notified, product.url("later"))
    conn = await notified.create()
    await send_verified(notified, conn)
    await notified.wait_for(conn["id"], lambda v: v["state"] == "connected")
    notified.start_notifier(**NOTIFIER)
    received = await product.wait_event("later", "connection.connected", conn["id"])
    assert verified(endpoint["secret"], received)["data"]["id"] == conn["id"]


async def test_a_notifier_killed_mid_retry_loses_nothing(notified: System, product: ProductReceiver) -> None:
    await notified.stop_notifiers()
    notified.start_notifier(**{**NOTIFIER, "notifier_retry_delays_s": "1.5"})
    product.answers["restart"].append(500)
    endpoint = await register(notified, product.url("restart"))
    conn = await notified.create()
    await send_verified(notified, conn)
    [first] = await wait_attempts(notified, endpoint["id"], 1)
    assert first["outcome"] == "failed" and first["next_retry_at"] is not None

    [(_, task)] = notified.notifiers  # killed: no graceful stop, the retry waits in RabbitMQ
    notified.notifiers.clear()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    notified.start_notifier(**{**NOTIFIER, "notifier_retry_delays_s": "1.5"})

    log = await wait_attempts(notified, endpoint["id"], 2)
    assert [(a["attempt"], a["outcome"]) for a in reversed(log)] == [(1, "failed"), (2, "delivered")]
    assert all(verified(endpoint["secret"], r)["data"]["id"] == conn["id"] for r in product.at("restart"))


async def wait_attempts(system: System, eid: str, count: int, timeout_s: float = 40) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        log = await attempts(system, eid)
        if len(log) >= count:
            return log
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{count} attempts not logged in {timeout_s}s: {log}")
        await asyncio.sleep(0.05)


async def wait_logged(system: System, eid: str, event_id: str, timeout_s: float = 40) -> dict[str, Any]:
    """The newest attempts log entry of one event at one endpoint, once it is logged."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        log = await attempts(system, eid)
        for entry in log:
            if entry["event_id"] == event_id:
                return entry
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no attempt of {event_id} logged in {timeout_s}s: {log}")
        await asyncio.sleep(0.05)


async def test_an_echo_handshake_on_a_pending_connection_is_reachable(
    notified: System, product: ProductReceiver
) -> None:
    endpoint = await register(notified, product.url("all"), events=["connection.reachable"])
    conn = await notified.create("dropbox", secret="k3xq9v2m7p4w1zt")
    async with notified.session.get(f"{conn['webhook_url']}?challenge=KCVkmwbMo9ysnt4DVvTOGtZPD6vYYw") as resp:
        assert resp.status == 200
    event = verified(endpoint["secret"], await product.wait_event("all", "connection.reachable", conn["id"]))
    assert event["data"]["state"] == "pending" and event["data"]["reachable_at"] is not None


async def test_silence_past_the_expected_interval_and_its_end(notified: System, product: ProductReceiver) -> None:
    endpoint = await register(notified, product.url("all"))
    conn = await notified.create(expected_interval_s=1)
    await send_verified(notified, conn)
    await product.wait_event("all", "connection.connected", conn["id"])
    silent = verified(endpoint["secret"], await product.wait_event("all", "connection.silent", conn["id"]))
    assert silent["data"]["display"] == "silent" and silent["data"]["health"] == "silent"

    await send_verified(notified, conn)
    recovered = verified(endpoint["secret"], await product.wait_event("all", "connection.recovered", conn["id"]))
    assert recovered["data"]["health"] == "ok"
    kinds = [r.event["type"] for r in product.at("all") if r.event["data"]["id"] == conn["id"]]
    before_recovery = kinds[:kinds.index("connection.recovered")]
    assert before_recovery.count("connection.silent") == 1, kinds  # once per silence


async def test_an_endpoint_failing_for_too_long_is_disabled(notified: System, product: ProductReceiver) -> None:
    await notified.stop_notifiers()
    notified.start_notifier(**{**NOTIFIER, "notifier_retry_delays_s": "1.2", "notifier_disable_after_failures": 100,
                               "notifier_disable_after_s": 1})
    product.always["down"] = 500
    endpoint = await register(notified, product.url("down"))
    await send_verified(notified, await notified.create())
    log = await wait_attempts(notified, endpoint["id"], 2)  # the second comes 1.2 s after the first
    assert [a["outcome"] for a in log] == ["failed", "failed"]

    status, view = await notified.api("GET", f"/v1/notification-endpoints/{endpoint['id']}")
    assert status == 200 and view["status"] == "disabled", view
    assert view["disabled_reason"].startswith("every attempt failed for ")
    assert view["failed_events"] == 1 and view["failing_since"] is not None


async def test_a_disabled_endpoint_enabled_again_receives_the_next_events(
    notified: System, product: ProductReceiver
) -> None:
    product.always["flaky"] = 503
    endpoint = await register(notified, product.url("flaky"))
    per_event = len(NOTIFIER["notifier_retry_delays_s"].split(",")) + 1  # type: ignore[attr-defined]
    for _ in range(2):
        await send_verified(notified, await notified.create())
    await wait_attempts(notified, endpoint["id"], 2 * per_event)
    path = f"/v1/notification-endpoints/{endpoint['id']}"
    status, view = await notified.api("GET", path)
    assert (status, view["status"], view["failed_events"]) == (200, "disabled", 2)

    # Refused, changing nothing: a browser token, an unknown id.
    token = await notified.browser_token("acct-test")
    status, data = await notified.api("POST", f"{path}/enable", headers={"Authorization": f"Bearer {token}"})
    assert (status, data["error"]["code"]) == (403, "service_token_required")
    status, data = await notified.api("POST", f"/v1/notification-endpoints/{'0' * 32}/enable")
    assert (status, data["error"]["code"]) == (404, "endpoint_not_found")
    assert (await notified.api("GET", path))[1]["status"] == "disabled"

    product.always.pop("flaky")  # the product fixed its endpoint
    status, view = await notified.api("POST", f"{path}/enable")
    assert status == 200
    assert (view["status"], view["disabled_reason"], view["disabled_at"]) == ("enabled", None, None)
    assert (view["failed_events"], view["failing_since"]) == (0, None)
    conn = await notified.create()
    await send_verified(notified, conn)
    event = await product.wait_event("flaky", "connection.connected", conn["id"])
    assert verified(endpoint["secret"], event)["data"]["id"] == conn["id"]
    entry = await wait_logged(notified, endpoint["id"], event.headers["webhook-id"])  # logged after the answer
    assert (entry["outcome"], entry["attempt"]) == ("delivered", 1)
    status, view = await notified.api("GET", path)
    assert (view["status"], view["failed_events"]) == ("enabled", 0)
