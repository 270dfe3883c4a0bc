"""Structured logs: the three services run as real processes (``python -m services.<name>``). With
``LOG_EACH_DELIVERY`` one webhook is followed from the receiver's log line to the verifier's by its
``delivery_id``; by default accepted webhooks and handled deliveries are counted in one summary line a
second, while a rejection is still logged on its own. Every line is one JSON object; no secret and no
body ever appears."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.signing import standard_webhooks_headers
from tests.system import free_port

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "log-test-token"
BODY_MARKER = "body-marker-7f3a"


@dataclass
class Proc:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def lines(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


@pytest.fixture
def log_each_delivery() -> str:
    return "1"


@pytest.fixture
def services(
    tmp_path: Path, amqp_url: str, redis_url: str, prefix: str, redis_client: object, amqp_cleanup: None,
    log_each_delivery: str,
) -> Iterator[dict[str, Proc]]:
    ports = {"receiver": free_port(), "status_api": free_port(), "verifier": free_port()}
    env = {
        **os.environ,
        "AMQP_URL": amqp_url, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "AMQP_PREFIX": prefix,
        "ANALYTICS_EXCHANGE": f"{prefix}.analytics", "LOG_LEVEL": "INFO", "STATUS_API_TOKEN": TOKEN,
        "LOG_EACH_DELIVERY": log_each_delivery,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{ports['receiver']}",
        "RECEIVER_PORT": str(ports["receiver"]), "RECEIVER_ADMIN_PORT": str(free_port()),
        "STATUS_API_PORT": str(ports["status_api"]),
        "VERIFIER_PORT": str(ports["verifier"]), "PYTHONPATH": str(ROOT),
    }
    procs: dict[str, Proc] = {}
    try:
        for name, port in ports.items():
            log = tmp_path / f"{name}.log"
            with log.open("wb") as sink:
                process = subprocess.Popen([sys.executable, "-m", f"services.{name}"], cwd=ROOT, env=env,
                                           stdout=subprocess.DEVNULL, stderr=sink)
            procs[name] = Proc(name, f"http://127.0.0.1:{port}", process, log)
        yield procs
    finally:
        for proc in procs.values():
            proc.process.terminate()
        for proc in procs.values():
            proc.process.wait(15)


async def wait_ready(session: aiohttp.ClientSession, procs: dict[str, Proc]) -> None:
    deadline = time.monotonic() + 30
    for proc in procs.values():
        while True:
            assert proc.process.poll() is None, f"{proc.name} exited: {proc.log.read_text()[-2000:]}"
            try:
                async with session.get(f"{proc.url}/readyz") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, f"{proc.name} did not become ready"
            await asyncio.sleep(0.1)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={}) as s:
        yield s


async def test_one_webhook_is_followed_across_services(
    services: dict[str, Proc], session: aiohttp.ClientSession
) -> None:
    await wait_ready(session, services)
    api = services["status_api"].url
    auth = {"Authorization": f"Bearer {TOKEN}"}
    create = {"account_id": "acct-logs", "provider": "standard-webhooks"}
    async with session.post(f"{api}/v1/connections", json=create, headers=auth) as resp:
        assert resp.status == 201
        conn = await resp.json()
    body = orjson.dumps({"type": "invoice.paid", "note": BODY_MARKER})
    headers = standard_webhooks_headers(conn["secret"], body, f"msg_{uuid.uuid4().hex}")
    async with session.post(conn["webhook_url"], data=body, headers=headers) as resp:
        assert resp.status == 202
        delivery_id = (await resp.json())["delivery_id"]
    deadline = time.monotonic() + 15
    while True:
        async with session.get(f"{api}/v1/connections/{conn['id']}", headers=auth) as resp:
            if (await resp.json())["state"] == "connected":
                break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)

    for proc in services.values():  # SIGTERM: the logs are flushed and complete
        proc.process.terminate()
        assert proc.process.wait(15) == 0 or proc.process.returncode == -15
    receiver, verifier = services["receiver"].lines(), services["verifier"].lines()

    accepted = [e for e in receiver if e.get("delivery_id") == delivery_id]
    handled = [e for e in verifier if e.get("delivery_id") == delivery_id]
    assert [e["event"] for e in accepted] == ["webhook accepted"]
    assert accepted[0]["service"] == "receiver" and accepted[0]["provider"] == "standard-webhooks"
    assert "delivery handled" in [e["event"] for e in handled]
    assert {e["service"] for e in handled} == {"verifier"}
    assert any(e.get("result") == "applied" and e.get("connection_id") == conn["id"] for e in handled)

    everything = [line for proc in services.values() for line in proc.log.read_text().splitlines()]
    for line in everything:
        entry = orjson.loads(line)  # one JSON object per line
        assert {"ts", "level", "service", "event"} <= entry.keys()
        assert conn["secret"] not in line and BODY_MARKER not in line
        assert conn["secret"].removeprefix("whsec_") not in line


async def _create(session: aiohttp.ClientSession, api: str) -> dict[str, Any]:
    create = {"account_id": "acct-logs", "provider": "standard-webhooks"}
    async with session.post(f"{api}/v1/connections", json=create, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        assert r.status == 201
        return dict(await r.json())


@pytest.mark.parametrize("log_each_delivery", ["0"])
async def test_accepted_webhooks_are_summarised_and_rejections_logged_one_by_one(
    services: dict[str, Proc], session: aiohttp.ClientSession, prefix: str, redis_client: Any
) -> None:
    await wait_ready(session, services)
    conn = await _create(session, services["status_api"].url)
    accepted = []
    for _ in range(5):
        body = orjson.dumps({"type": "invoice.paid", "note": BODY_MARKER})
        headers = standard_webhooks_headers(conn["secret"], body, f"msg_{uuid.uuid4().hex}")
        async with session.post(conn["webhook_url"], data=body, headers=headers) as resp:
            assert resp.status == 202
            accepted.append((await resp.json())["delivery_id"])
    forged = standard_webhooks_headers("whsec_" + "QUJD" * 8, b"{}", f"msg_{uuid.uuid4().hex}")
    async with session.post(conn["webhook_url"], data=b"{}", headers=forged) as resp:
        assert resp.status == 401
        rejected_id = (await resp.json())["error"]["delivery_id"]
    key = f"{prefix}:{{{conn['id']}}}:conn"
    deadline = time.monotonic() + 15
    while int(await redis_client.hget(key, "events_received") or 0) < 5:
        assert time.monotonic() < deadline, "the verifier did not store the 5 events"
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # the rejected one is handled too

    for proc in services.values():  # SIGTERM: what is counted but not yet summarised is logged on the way out
        proc.process.terminate()
        assert proc.process.wait(15) == 0 or proc.process.returncode == -15
    receiver, verifier = services["receiver"].lines(), services["verifier"].lines()

    # No line per accepted webhook; the summaries add up to exactly the five.
    assert not [e for e in receiver if e.get("delivery_id") in accepted]
    summaries = [e for e in receiver if e["event"] == "webhooks accepted"]
    assert sum(e["counts"]["standard-webhooks"]["verified"] for e in summaries) == 5
    assert sum(e["total"] for e in summaries) == 5 and {e["interval_s"] for e in summaries} == {1.0}
    # A rejection: its own line, with its delivery id and reason.
    rejected = [e for e in receiver if e.get("delivery_id") == rejected_id]
    assert [(e["event"], e["reason"]) for e in rejected] == [("webhook rejected", "signature_mismatch")]
    # The verifier: no line per delivery, a summary by outcome and result.
    assert not [e for e in verifier if e["event"] == "delivery handled"]
    handled = [e for e in verifier if e["event"] == "deliveries handled"]
    assert sum(e["counts"].get("verified", {}).get("applied", 0) for e in handled) == 5
    assert sum(e["counts"].get("rejected", {}).get("applied", 0) for e in handled) == 1
    for line in services["receiver"].log.read_text().splitlines() + services["verifier"].log.read_text().splitlines():
        assert conn["secret"] not in line and BODY_MARKER not in line
