"""The page checked by axe-core (Deque's rule engine, as shipped in ``axe-playwright-python``) against
WCAG 2.1 A and AA, with connections in every look at once, shadow DOM included."""

from __future__ import annotations

from typing import Any

import pytest
from axe_playwright_python.base import AXE_SCRIPT
from playwright.async_api import expect

from tests.browser.conftest import UI
from tests.browser.test_integrations_page import account, send_event

pytestmark = pytest.mark.slow
RUN_AXE = """() => axe.run(document, {
  runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
  resultTypes: ['violations'],
}).then(r => r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,
  nodes: v.nodes.map(n => n.target.join(' ')) })))"""


async def _axe(ui: UI) -> list[dict[str, Any]]:
    await ui.page.evaluate(AXE_SCRIPT)
    return list(await ui.page.evaluate(RUN_AXE))


async def test_no_wcag_violations_in_any_state(ui: UI) -> None:
    acct = account()
    ok = await ui.system.create(account_id=acct)
    failing = await ui.system.create(account_id=acct)
    waiting = await ui.system.create(account_id=acct)
    late = await ui.system.create(account_id=acct, timeout_s=1)
    gone = await ui.system.create(account_id=acct)
    for conn in (ok, failing):
        assert await send_event(ui.system, conn) == 202
    wrong = (await ui.system.create(account_id=account()))["secret"]
    for _ in range(3):  # failing: sustained rejection without verified traffic (3 in a row)
        assert await send_event(ui.system, failing, secret=wrong) == 401
    assert (await ui.system.api("DELETE", f"/v1/connections/{gone['id']}"))[0] == 200
    await ui.open(acct)
    await ui.wait_live()
    await ui.card(waiting["id"]).get_by_role("button", name="Send test event").click()
    for conn, display in ((ok, "connected"), (failing, "failing"), (late, "failed"), (gone, "disconnected")):
        await expect(ui.card(conn["id"])).to_have_attribute("data-display", display)
    await expect(ui.card(waiting["id"]).locator(".test")).to_have_attribute("data-test-state", "waiting")

    violations = await _axe(ui)
    assert violations == [], violations

    # The check is not vacuous: a nameless button inside the component's shadow root is caught.
    await ui.page.evaluate("""() => document.querySelector('integration-status').shadowRoot
        .querySelector('.actions').append(document.createElement('button'))""")
    assert "button-name" in {v["id"] for v in await ui.page.evaluate(RUN_AXE)}


async def test_no_wcag_violations_in_the_expired_message(ui: UI) -> None:
    await ui.open(token="hsb1.not.valid")
    await expect(ui.component).to_have_attribute("data-error", "invalid_token")
    violations = await _axe(ui)
    assert violations == [], violations


async def test_no_wcag_violations_in_the_provider_picker_and_its_setup(ui: UI) -> None:
    acct = account()
    status, data = await ui.system.api("POST", f"/v1/accounts/{acct}/tokens", json={"create": {"limit": 1}})
    assert status == 201
    await ui.open(token=data["token"])
    await ui.wait_live()
    picker = ui.component.locator(".picker")
    await picker.get_by_label("Search providers by name or category").fill("payments")
    assert await _axe(ui) == []
    await picker.locator('.pick[data-provider="stripe"]').click()
    await expect(picker.locator(".setup .badge")).to_have_text("Pending")
    await expect(picker.locator(".picker-note")).to_be_visible()  # the grant is spent: picks dimmed, a note
    violations = await _axe(ui)
    assert violations == [], violations
    # After "Done": the card's way back to the setup, open, with the field for Stripe's secret.
    await picker.locator(".setup").get_by_role("button", name="Done").click()
    card = ui.component.locator("article.card")
    await card.get_by_role("button", name="Setup steps").click()
    await expect(card.get_by_label("Signing secret from Stripe")).to_be_visible()
    violations = await _axe(ui)
    assert violations == [], violations
