"""Every state of a connection, as people see it, photographed in the browser.

By default the pictures go to a temporary folder and the test checks them. To refresh the ones in
the docs:  SCREENSHOTS_DIR=docs/img .venv/bin/python -m pytest tests/browser/test_screenshots.py
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from tests.browser.conftest import UI
from tests.browser.test_integrations_page import send_event
from tests.system import System

pytestmark = pytest.mark.slow
# state name (the picture's name) -> the card's data-display when it is photographed
DISPLAYS = {
    "connected": "connected",
    "test-passed": "connected",
    "pending": "pending",
    "failing": "failing",
    "silent": "silent",
    "failed": "failed",
    "disconnected": "disconnected",
    "test-waiting": "pending",
}
STATES = tuple(DISPLAYS)


async def _make_states(system: System, acct: str) -> dict[str, dict[str, Any]]:
    """One connection per state, for one account (the test one still waits for its test)."""
    made = {
        name: await system.create(
            account_id=acct,
            timeout_s=1 if name == "failed" else 600,
            **({"expected_interval_s": 1} if name == "silent" else {}),
        )
        for name in STATES
    }
    for name in ("connected", "test-passed", "failing", "silent"):
        assert await send_event(system, made[name]) == 202
        await system.wait_for(made[name]["id"], lambda v: v["state"] == "connected")
    wrong = (await system.create(account_id=f"{acct}-other"))["secret"]
    for _ in range(3):  # failing: sustained rejection without verified traffic (3 in a row)
        assert await send_event(system, made["failing"], secret=wrong) == 401
    status, _ = await system.api("DELETE", f"/v1/connections/{made['disconnected']['id']}")
    assert status == 200
    await system.wait_for(made["failed"]["id"], lambda v: v["state"] == "failed")
    await system.wait_for(made["failing"]["id"], lambda v: v["health"] == "failing")
    await system.wait_for(made["silent"]["id"], lambda v: v["health"] == "silent")
    return made


async def _pass_a_test(ui: UI, conn: dict[str, Any]) -> None:
    card = ui.card(conn["id"])
    await card.get_by_role("button", name="Send test event").click()
    await expect(card.locator(".test")).to_have_attribute("data-test-state", "waiting")
    assert await send_event(ui.system, conn) == 202
    await expect(card.locator(".test")).to_have_attribute("data-test-state", "passed")


async def test_screenshots_of_every_state(ui: UI, tmp_path: Path) -> None:
    out = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    acct = f"acct-{uuid.uuid4().hex[:6]}"
    made = await _make_states(ui.system, acct)
    await ui.page.emulate_media(reduced_motion="reduce")  # a still spinner photographs the same each time
    await ui.open(acct)
    await ui.wait_live()
    await _pass_a_test(ui, made["test-passed"])
    waiting = ui.card(made["test-waiting"]["id"])
    await waiting.get_by_role("button", name="Send test event").click()
    await expect(waiting.locator(".test")).to_have_attribute("data-test-state", "waiting")
    for name, display in DISPLAYS.items():
        await expect(ui.card(made[name]["id"])).to_have_attribute("data-display", display)
    written = []
    for name, conn in made.items():
        path = out / f"state-{name}.png"
        card = ui.card(conn["id"])
        await card.scroll_into_view_if_needed()  # deliveries are read for cards on screen
        _, stored = await ui.system.api("GET", f"/v1/connections/{conn['id']}/deliveries")
        await expect(card.locator(".delivery")).to_have_count(min(len(stored["deliveries"]), 5))
        await expect(card.locator(".deliveries")).not_to_contain_text("Loading…")
        await card.screenshot(path=path)
        written.append(path)
    for path in written:  # a card, not a blank: PNG of some size, but small enough for the repo
        assert 1000 < path.stat().st_size < 150_000, (path, path.stat().st_size)


async def test_screenshots_of_the_provider_picker(ui: UI, tmp_path: Path) -> None:
    """The picker narrowed by a search, and the setup panel of a Stripe connection it created."""
    out = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    acct = f"acct-{uuid.uuid4().hex[:6]}"
    status, minted = await ui.system.api("POST", f"/v1/accounts/{acct}/tokens", json={"create": {"limit": 1}})
    assert status == 201
    await ui.page.emulate_media(reduced_motion="reduce")
    await ui.open(token=minted["token"])
    await ui.wait_live()
    picker = ui.component.locator(".picker")
    await picker.get_by_label("Search providers by name or category").fill("payments")
    catalog = (await ui.system.api("GET", "/v1/providers", params={"q": "payments"}))[1]["providers"]
    await expect(picker.locator(".pick:visible")).to_have_count(len(catalog))
    await picker.screenshot(path=out / "picker-search.png")
    await picker.locator('.pick[data-provider="stripe"]').click()
    setup = picker.locator(".setup")
    await expect(setup.locator(".badge")).to_have_text("Pending")
    await setup.screenshot(path=out / "picker-setup.png")
    for name in ("picker-search.png", "picker-setup.png"):
        assert 1000 < (out / name).stat().st_size < 150_000, name
