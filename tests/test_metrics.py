"""Metrics: the table in docs/METRICS.md is what every service's ``/metrics`` exposes, and real traffic
through the real services moves the documented series, with bounded labels only."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.verifier.app import run as run_verifier
from tests.signing import standard_webhooks_headers
from tests.system import System, free_port

DOC = Path(__file__).resolve().parent.parent / "docs" / "METRICS.md"
ROW = re.compile(r"^\|\s*`(hookstatus_[a-z_]+)`\s*\|\s*(counter|gauge|histogram)\s*\|([^|]*)\|")
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def documented() -> dict[str, tuple[str, set[str]]]:
    """name -> (type, label names) from the table."""
    rows: dict[str, tuple[str, set[str]]] = {}
    for line in DOC.read_text().splitlines():
        match = ROW.match(line)
        if match:
            name, kind, labels = match.groups()
            rows[name] = (kind, {part.strip() for part in labels.split(",") if part.strip()})
    return rows


def exposed_types(text: str) -> dict[str, str]:
    """name -> type from the ``# TYPE`` lines (counters keep their ``_total`` there)."""
    found = {}
    for line in text.splitlines():
        if line.startswith("# TYPE hookstatus_"):
            _, _, name, kind = line.split()
            found[name] = kind
    return found


def series(text: str) -> Series:
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(data: Series, name: str, **labels: str) -> float:
    return data.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def verifier_url(system: System) -> AsyncIterator[str]:
    """A verifier with its health/metrics server on, refreshing the gauges often."""
    port = free_port()
    stop = asyncio.Event()
    settings = system.verifier_settings(verifier_port=port, gauges_interval_s=0.1)
    task = asyncio.create_task(run_verifier(settings, stop, serve_http=True))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            async with system.session.get(f"{url}/healthz") as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the verifier's HTTP server did not start"
        await asyncio.sleep(0.05)
    yield url
    stop.set()
    await asyncio.wait_for(task, 15)


async def scrape(system: System, base: str) -> str:
    async with system.session.get(f"{base}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return await resp.text()


async def wait_series(system: System, base: str, check: object, timeout_s: float = 10) -> Series:
    deadline = time.monotonic() + timeout_s
    while True:
        data = series(await scrape(system, base))
        if check(data):  # type: ignore[operator]
            return data
        assert time.monotonic() < deadline, "metrics did not reach the expected values"
        await asyncio.sleep(0.1)


async def signed(system: System, conn: dict[str, object], secret: str | None = None) -> int:
    body = orjson.dumps({"type": "invoice.paid"})
    headers = standard_webhooks_headers(secret or str(conn["secret"]), body, f"msg_{uuid.uuid4().hex}")
    status, _ = await system.post_hook(str(conn["webhook_url"]), body, headers)
    return status


async def test_the_table_is_what_every_service_exposes(system: System, verifier_url: str) -> None:
    table = documented()
    assert len(table) >= 15
    for base in (system.receiver_admin_url, system.api_url, verifier_url):
        text = await scrape(system, base)
        assert exposed_types(text) == {name: kind for name, (kind, _) in table.items()}, base
        for family in text_string_to_metric_families(text):
            name = family.name + ("_total" if family.type == "counter" else "")
            if name not in table:
                continue
            labels = {k for s in family.samples for k in s.labels if k not in ("le", "quantile")}
            assert labels <= table[name][1], (name, labels)


async def test_webhooks_and_transitions_are_counted_without_ids(system: System, verifier_url: str) -> None:
    before = series(await scrape(system, verifier_url))
    account = f"acct-{uuid.uuid4().hex[:8]}"
    conn = await system.create(account_id=account)
    other = await system.create(account_id=account)
    assert await signed(system, conn, secret=str(other["secret"])) == 401  # wrong secret
    assert await signed(system, conn) == 202
    await system.wait_for(str(conn["id"]), lambda v: v["state"] == "connected")

    def moved(data: Series) -> bool:
        return value(data, "hookstatus_connections", state="connected") == 1

    after = await wait_series(system, verifier_url, moved)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("hookstatus_webhooks_total", provider="standard-webhooks", outcome="verified") == 1
    assert delta("hookstatus_webhooks_total", provider="standard-webhooks", outcome="signature_mismatch") == 1
    assert delta("hookstatus_http_requests_total", service="receiver", route="/hooks/{connection_id}",
                 method="POST", status="202") == 1
    assert delta("hookstatus_state_transitions_total", from_state="none", to_state="pending") == 2
    assert delta("hookstatus_state_transitions_total", from_state="pending", to_state="connected") == 1
    assert delta("hookstatus_setup_to_connected_seconds_count") == 1
    assert delta("hookstatus_publish_confirm_seconds_count") == 2
    assert delta("hookstatus_consume_seconds_count") == 2
    assert delta("hookstatus_deliveries_consumed_total", result="applied") == 2
    assert value(after, "hookstatus_connections", state="pending") == 1
    assert value(after, "hookstatus_queue_consumers", queue="deliveries") >= 2
    assert ("hookstatus_queue_messages", frozenset({("queue", "dead_letter")})) in after
    assert value(after, "hookstatus_gauges_refreshed_timestamp_seconds") > 0

    text = "\n".join(await asyncio.gather(*(scrape(system, b) for b in (system.receiver_admin_url, system.api_url))))
    for secret_or_id in (conn["id"], other["id"], account, conn["secret"], other["secret"]):
        assert str(secret_or_id) not in text


async def test_every_transition_path_is_counted_once(system: System, verifier_url: str) -> None:
    """The sweep (pending -> failed), a reconnect (failed -> pending) and a disconnect, each once."""
    before = series(await scrape(system, verifier_url))
    conn = await system.create(timeout_s=1)
    cid = str(conn["id"])
    await system.wait_for(cid, lambda v: v["state"] == "failed")
    status, _ = await system.api("POST", f"/v1/connections/{cid}/reconnect", json={"timeout_s": 600})
    assert status == 200
    status, _ = await system.api("DELETE", f"/v1/connections/{cid}")
    assert status == 200

    def settled(data: Series) -> bool:
        return value(data, "hookstatus_connections", state="disconnected") == 1

    after = await wait_series(system, verifier_url, settled)

    def delta(frm: str, to: str) -> float:
        labels = {"from_state": frm, "to_state": to}
        name = "hookstatus_state_transitions_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert (delta("none", "pending"), delta("pending", "failed"), delta("failed", "pending"),
            delta("pending", "disconnected")) == (1, 1, 1, 1)
    assert {s: value(after, "hookstatus_connections", state=s) for s in ("pending", "failed", "connected")} == {
        "pending": 0, "failed": 0, "connected": 0}
    assert value(after, "hookstatus_pending_past_deadline") == 0


def test_the_loop_families_expose_what_the_librarys_own_would_for_the_same_updates() -> None:
    """``LoopCounter`` and ``LoopHistogram`` (shared/metrics.py) stand in for prometheus_client's
    Counter and Histogram on the per-request paths: fed the same updates, each registry's text is the
    same, buckets and sums included (values on a bucket's bound count in it: ``le``)."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from shared.metrics import LoopCounter, LoopHistogram

    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counters = (LoopCounter("x_requests_total", "Requests.", ["route", "status"], registry=ours),
                Counter("x_requests_total", "Requests.", ["route", "status"], registry=theirs))
    plain = (LoopCounter("x_plain_total", "Plain.", registry=ours), Counter("x_plain_total", "Plain.", registry=theirs))
    spreads = (LoopHistogram("x_seconds", "Time.", ["route"], registry=ours),
               Histogram("x_seconds", "Time.", ["route"], registry=theirs))
    waits = (LoopHistogram("x_wait_seconds", "Wait.", buckets=(0.001, 0.01, 0.1), registry=ours),
             Histogram("x_wait_seconds", "Wait.", buckets=(0.001, 0.01, 0.1), registry=theirs))
    updates = [("/a", "200", 0.0004), ("/a", "200", 0.005), ("/a", "404", 0.25), ("/b", "200", 12.0),
               ("/b", "503", 0.1), ("/a", "200", 0.0)]
    for counter, single, spread, wait in zip(counters, plain, spreads, waits, strict=True):
        for route, status, seconds in updates:
            counter.labels(route, status).inc()
            spread.labels(route).observe(seconds)
            wait.observe(seconds)
        single.inc(2.5)
    assert generate_latest(ours) == generate_latest(theirs)
    assert b'x_seconds_bucket{le="0.005",route="/a"} 3.0' in generate_latest(ours)
    with pytest.raises(ValueError):
        counters[0].labels("/a").inc()
    with pytest.raises(ValueError):
        counters[0].labels("/a", "200").inc(-1)
