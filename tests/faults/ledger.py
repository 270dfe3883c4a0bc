"""The ledger every fault test keeps, and the provider-like sender that fills it.

    sent      = accepted (202) + refused (4xx/503), per request; no request may go unanswered
    lost      = accepted events that are not in the stored state
    doubled   = stored counts above the number of distinct events stored

An event is one provider event id (``X-Event-Id``). A provider retries a refused event with the same
id, so an event refused with 503 whose message did reach the broker anyway may be stored: that is
allowed (the dedupe makes the retry a no-op) and counted as ``stored_after_refusal``. What is never
allowed is an accepted event missing, or any event counted twice.

Each test writes its figures to ``build/reliability.json`` (merged by test name), which
``docs/RELIABILITY.md`` quotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import hmac
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from shared.keys import Keys

REPORT = Path(__file__).resolve().parents[2] / "build" / "reliability.json"


@dataclass
class Target:
    """One connection under test: where to send and the secret to sign with."""

    cid: str
    url: str
    secret: str


@dataclass
class Ledger:
    name: str
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    unanswered: int = 0
    unanswered_why: Counter[str] = field(default_factory=Counter)  # the client's error, by type
    accepted_events: dict[str, str] = field(default_factory=dict)  # event id -> connection id
    refused_events: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        return self.statuses[202]

    @property
    def refused(self) -> int:
        return sum(n for status, n in self.statuses.items() if 400 <= status < 600)

    def record(self, event_id: str, cid: str, status: int | None, why: str = "") -> None:
        """One request's answer: its status, or None and ``why`` (the client's error) for none."""
        self.sent += 1
        if status is None:
            self.unanswered += 1
            self.unanswered_why[why or "unknown"] += 1
            self.refused_events.setdefault(event_id, cid)
            return
        self.statuses[status] += 1
        if status == 202:
            self.accepted_events[event_id] = cid
            self.refused_events.pop(event_id, None)
        elif event_id not in self.accepted_events:
            self.refused_events[event_id] = cid

    def summary(self) -> str:
        return json.dumps(self.figures or self._request_figures(), sort_keys=True)

    def _request_figures(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "accepted": self.accepted,
            "refused": self.refused,
            "unanswered": self.unanswered,
            **({"unanswered_why": dict(self.unanswered_why)} if self.unanswered_why else {}),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "events_accepted": len(self.accepted_events),
            **self.extra,
        }

    async def reconcile(self, redis: aioredis.Redis, prefix: str, targets: list[Target]) -> dict[str, Any]:
        """Compare the ledger with what Redis stored; fill ``figures``; return them."""
        keys = Keys(prefix)
        counted = 0
        stored: set[str] = set()
        for target in targets:
            counted += int(await redis.hget(keys.conn(target.cid), "events_received") or 0)
        events = {**self.refused_events, **self.accepted_events}
        async with redis.pipeline(transaction=False) as pipe:
            ids = list(events)
            for event_id in ids:
                pipe.exists(keys.seen_event(events[event_id], event_id))
            for event_id, present in zip(ids, await pipe.execute(), strict=True):
                if present:
                    stored.add(event_id)
        lost = sorted(set(self.accepted_events) - stored)
        self.figures = {
            **self._request_figures(),
            "stored_events": len(stored),
            "events_received_total": counted,
            "stored_after_refusal": len(stored - set(self.accepted_events)),
            "lost": len(lost),
            "doubled": counted - len(stored),
            "lost_sample": lost[:5],
        }
        return self.figures

    def assert_clean(self) -> None:
        f = self.figures
        problems = []
        if f["sent"] != f["accepted"] + f["refused"] + f["unanswered"]:
            problems.append("sent != accepted + refused + unanswered")
        if f["lost"]:
            problems.append(f"{f['lost']} accepted event(s) lost")
        if f["doubled"]:
            problems.append(f"{f['doubled']} event(s) counted twice")
        assert not problems, f"{self.name}: {'; '.join(problems)}\nledger: {self.summary()}"

    def write(self, command: str) -> None:
        """Merge this test's figures into build/reliability.json."""
        write_report(self.name, {**(self.figures or self._request_figures()), "command": command})


def write_report(name: str, figures: dict[str, Any]) -> None:
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with open(REPORT.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data: dict[str, Any] = {}
        with contextlib.suppress(FileNotFoundError, ValueError):
            data = json.loads(REPORT.read_text())
        data[name] = {**figures, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        REPORT.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def signed(target: Target, event_id: str) -> tuple[bytes, dict[str, str]]:
    """A generic-hmac-sha256 request: 'sha256=' + hex HMAC-SHA256 of the raw body."""
    body = json.dumps({"id": event_id, "type": "fault.test"}).encode()
    digest = hmac.new(target.secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-Signature-256": f"sha256={digest}", "X-Event-Id": event_id,
                  "Content-Type": "application/json"}


class Sender:
    """Sends signed events like a provider would, recording every answer in the ledger."""

    def __init__(self, session: aiohttp.ClientSession, ledger: Ledger, targets: list[Target],
                 concurrency: int = 32, timeout_s: float = 15) -> None:
        self.session = session
        self.ledger = ledger
        self.targets = {t.cid: t for t in targets}
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._slots = asyncio.Semaphore(concurrency)

    def sign(self, target: Target, event_id: str) -> tuple[bytes, dict[str, str]]:
        return signed(target, event_id)

    async def send(self, target: Target, event_id: str) -> int | None:
        body, headers = self.sign(target, event_id)
        why = ""
        async with self._slots:
            try:
                async with self.session.post(target.url, data=body, headers=headers, timeout=self.timeout) as r:
                    await r.read()
                    status: int | None = r.status
                    if r.status == 503:
                        assert r.headers.get("Retry-After"), "a 503 must carry Retry-After"
            except (TimeoutError, aiohttp.ClientError) as exc:
                status, why = None, f"{type(exc).__name__}: {exc}"[:120]
        self.ledger.record(event_id, target.cid, status, why)
        return status

    async def send_many(self, items: list[tuple[Target, str]]) -> None:
        await asyncio.gather(*(self.send(t, e) for t, e in items))

    async def retry_refused(self, rounds: int = 20, pause_s: float = 0.5) -> int:
        """Retry every refused event (same id, as a provider does) until accepted; returns retries."""
        retries = 0
        for _ in range(rounds):
            pending = list(self.ledger.refused_events.items())
            if not pending:
                break
            await self.send_many([(self.targets[cid], eid) for eid, cid in pending])
            retries += len(pending)
            if self.ledger.refused_events:
                await asyncio.sleep(pause_s)
        return retries


async def counted_events(redis: aioredis.Redis, prefix: str, targets: list[Target]) -> int:
    """``events_received`` of the connections, added up."""
    keys = Keys(prefix)
    return sum([int(await redis.hget(keys.conn(t.cid), "events_received") or 0) for t in targets])


async def wait_stored(redis: aioredis.Redis, prefix: str, targets: list[Target], expected: int,
                      timeout_s: float = 60) -> int:
    """Wait until the connections together counted ``expected`` events (or time runs out)."""
    deadline = time.monotonic() + timeout_s
    while True:
        total = await counted_events(redis, prefix, targets)
        if total >= expected or time.monotonic() > deadline:
            return total
        await asyncio.sleep(0.1)


async def consumed_by_result(session: aiohttp.ClientSession, verifier_url: str) -> dict[str, float]:
    """The verifier's ``hookstatus_deliveries_consumed_total`` by result, read from its /metrics."""
    async with session.get(verifier_url + "/metrics") as resp:
        text = await resp.text()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("hookstatus_deliveries_consumed_total{"):
            labels, _, value = line.rpartition(" ")
            result = labels.split('result="', 1)[1].split('"', 1)[0]
            found[result] = float(value)
    return found
