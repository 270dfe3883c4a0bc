"""The integrations page, in Chromium, on the real system: a test's hop checklist fills in live (each hop
checked as the receiver, the verifier and the status API reach it), a rejected test event says where
it stopped and why, and a connection silent by its learned rhythm says so in words."""

from __future__ import annotations

import base64
import os
import uuid

import orjson
import pytest
import stripe
from playwright.async_api import expect

from services.receiver import app as receiver_app
from shared.models import now_ms
from tests.browser.conftest import UI
from tests.browser.test_integrations_page import send_event

HOPS = ("received", "verified", "queued", "consumed", "stored", "pushed")


async def _open_test(ui: UI, cid: str) -> None:
    await ui.open()
    await ui.wait_live()
    await ui.mark_document()
    card = ui.card(cid)
    await card.get_by_role("button", name="Send test event").click()
    await expect(card.locator(".test")).to_have_attribute("data-test-state", "waiting")


async def test_the_hop_checklist_fills_in_live(ui: UI) -> None:
    conn = await ui.system.create()
    await _open_test(ui, conn["id"])
    panel = ui.card(conn["id"]).locator(".test")
    for name in HOPS:  # nothing yet
        await expect(panel.locator(f'.hop[data-hop="{name}"]')).to_have_attribute("data-reached", "false")
    await expect(panel.locator(".hops-message")).to_have_text("Nothing has reached the receiver yet.")

    await ui.system.stop_verifiers()  # the event stops at the queue, so the page shows that step
    assert await send_event(ui.system, conn) == 202
    for name in ("received", "verified", "queued"):
        await expect(panel.locator(f'.hop[data-hop="{name}"]')).to_have_attribute("data-reached", "true")
    await expect(panel.locator('.hop[data-hop="consumed"]')).to_have_attribute("data-reached", "false")
    await expect(panel.locator(".hops-message")).to_have_text(
        "Received, verified and queued; not consumed by the verifier yet.")
    await expect(panel).to_have_attribute("data-test-state", "waiting")

    ui.system.start_verifier()
    await expect(panel).to_have_attribute("data-test-state", "passed")
    for name in HOPS:
        hop = panel.locator(f'.hop[data-hop="{name}"]')
        await expect(hop).to_have_attribute("data-reached", "true")
        await expect(hop.locator("time")).to_have_count(1)
    await expect(panel.locator(".hops-message")).to_contain_text("Reached every hop")
    assert await ui.same_document()  # live, never a reload


async def test_a_rejected_test_event_shows_where_it_stopped(ui: UI) -> None:
    conn = await ui.system.create()
    await _open_test(ui, conn["id"])
    panel = ui.card(conn["id"]).locator(".test")
    stranger = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    assert await send_event(ui.system, conn, secret=stranger) == 401
    rejected = panel.locator('.hop[data-hop="rejected"]')
    await expect(rejected).to_have_attribute("data-reached", "true")
    await expect(rejected.locator(".icon-cross")).to_be_visible()
    await expect(panel.locator('.hop[data-hop="verified"]')).to_have_count(0)
    await expect(panel.locator(".hops-message")).to_contain_text("Reached the receiver, but was rejected: "
                                                                 "signature mismatch.")


async def test_a_connection_silent_by_its_rhythm_says_why(ui: UI, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = await ui.system.create("stripe", secret=f"whsec_{uuid.uuid4().hex}")
    clock_ms = now_ms() - 3 * 3600_000  # three hours ago, on the receiver's clock
    monkeypatch.setattr(receiver_app, "now_ms", lambda: clock_ms)
    for _ in range(21):  # every 4 minutes: more than the 20 events the rhythm needs by default
        body = orjson.dumps({"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": "invoice.paid"}).decode()
        header = stripe.WebhookSignature.generate_signature_header(body, conn["secret"], clock_ms // 1000)
        status, _ = await ui.system.post_hook(conn["webhook_url"], body, {"Stripe-Signature": header})
        assert status == 202
        clock_ms += 4 * 60_000
    await ui.system.wait_for(conn["id"], lambda v: v["events_received"] == 21)
    await ui.open()
    await ui.wait_live()
    card = ui.card(conn["id"])
    await expect(card).to_have_attribute("data-display", "silent")
    await expect(card.locator(".badge")).to_have_text("Silent")
    await expect(card.locator(".summary")).to_have_text(
        "Usually hears from Stripe every ~4 minutes; nothing for 2 hours. Check the provider's side.")
