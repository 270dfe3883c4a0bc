"""Learned silence through the whole system: Stripe events signed with Stripe's SDK reach the real receiver
(whose clock the test drives, so a day of four-minute gaps takes no time), the verifier learns the
connection's rhythm, the status API says when it goes quiet and why, the notifier's silence sweep sends
``connection.silent``, and the next event brings it back."""

from __future__ import annotations

import random
import uuid
from typing import Any

import orjson
import pytest
import stripe

from services.receiver import app as receiver_app
from shared.models import now_ms
from tests.notifier.conftest import ProductReceiver, register
from tests.notifier.test_notifications import verified
from tests.system import System

MINUTE_MS = 60_000
DEFAULT_MIN_EVENTS = 20  # the verifier's default LEARNED_SILENCE_MIN_EVENTS


class Clock:
    """The receiver's ``now_ms``, moved by the test."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


async def _send(system: System, conn: dict[str, Any], clock: Clock) -> None:
    body = orjson.dumps({"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": "invoice.paid"}).decode()
    header = stripe.WebhookSignature.generate_signature_header(body, conn["secret"], clock.ms // 1000)
    status, reply = await system.post_hook(conn["webhook_url"], body,
                                           {"Stripe-Signature": header, "content-type": "application/json"})
    assert status == 202, reply


async def test_a_connection_learns_its_rhythm_goes_silent_is_notified_and_recovers(
    notified: System, product: ProductReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = await register(notified, product.url("all"))
    conn = await notified.create("stripe", secret=f"whsec_{uuid.uuid4().hex}")
    start = now_ms() - 24 * 3600_000  # a day ago, on the receiver's clock
    clock = Clock(start)
    monkeypatch.setattr(receiver_app, "now_ms", clock)
    jitter = random.Random(7)

    async def events(count: int) -> None:
        for _ in range(count):
            await _send(notified, conn, clock)
            clock.ms += 4 * MINUTE_MS + jitter.randint(-30_000, 30_000)

    await events(DEFAULT_MIN_EVENTS - 1)  # one short of what the rhythm needs to say silent
    view = await notified.wait_for(conn["id"], lambda v: v["events_received"] == DEFAULT_MIN_EVENTS - 1)
    assert (view["health"], view["display"], view["silence"]) == ("ok", "connected", None)  # quiet ~23 hours
    assert view["rhythm"]["gaps_learned"] == DEFAULT_MIN_EVENTS - 2
    assert view["rhythm"]["silent_after_s"] is None

    await events(6)
    view = await notified.wait_for(conn["id"], lambda v: v["events_received"] == DEFAULT_MIN_EVENTS + 5)
    rhythm = view["rhythm"]
    assert 210 < rhythm["usual_gap_s"] < 270
    assert rhythm["silent_after_s"] == pytest.approx(
        max(rhythm["usual_gap_s"] + 6 * rhythm["spread_s"], 8 * rhythm["usual_gap_s"], 900), abs=1)
    assert (view["health"], view["display"]) == ("silent", "silent")
    silence = view["silence"]
    assert silence["cause"] == "learned_rhythm"
    assert silence["message"] == ("Usually hears from Stripe every ~4 minutes; nothing for 22 hours. Check the "
                                  "provider's side.")
    assert view["reason_message"] == view["cta"]["hint"] == silence["message"]

    # The notifier's silence sweep found it at the learned time (long past): connection.silent, with the words.
    event = verified(endpoint["secret"], await product.wait_event("all", "connection.silent", conn["id"]))
    assert event["data"]["silence"]["cause"] == "learned_rhythm"
    assert event["data"]["reason_message"].startswith("Usually hears from Stripe every ~4 minutes; nothing for ")

    clock.ms = now_ms()
    await _send(notified, conn, clock)
    view = await notified.wait_for(conn["id"], lambda v: v["events_received"] == DEFAULT_MIN_EVENTS + 6)
    assert (view["health"], view["display"], view["silence"]) == ("ok", "connected", None)
    recovered = verified(endpoint["secret"], await product.wait_event("all", "connection.recovered", conn["id"]))
    assert recovered["data"]["health"] == "ok"
