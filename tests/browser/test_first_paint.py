"""The page shows its frame and a loading state at once: from the HTML itself before any script has run,
then from the element while its first API answers are on their way; the data replaces it."""

from __future__ import annotations

import asyncio

from playwright.async_api import Route, expect

from tests.browser.conftest import UI


class Gate:
    """Holds every request a route matches until ``open``."""

    def __init__(self) -> None:
        self.held = 0
        self._open = asyncio.Event()

    async def __call__(self, route: Route) -> None:
        self.held += 1
        await self._open.wait()
        await route.continue_()

    def open(self) -> None:
        self._open.set()


async def test_heading_and_loading_state_show_before_the_data(ui: UI) -> None:
    made = await ui.system.create("standard-webhooks", account_id="acct-test")
    token = await ui.system.browser_token("acct-test")
    script, api = Gate(), Gate()
    await ui.page.route("**/ui/integration-status.js", script)
    await ui.page.route("**/v1/**", api)
    await ui.page.goto(f"{ui.system.api_url}/ui/?token={token}", wait_until="commit")

    # First paint: the HTML alone, the element's script held back.
    page_loading = ui.page.locator(".page-loading")
    await expect(ui.page.get_by_role("heading", name="Integrations", level=1)).to_be_visible()
    await expect(page_loading.get_by_role("heading", name="Connections")).to_be_visible()
    await expect(page_loading.get_by_role("status")).to_have_text("Loading integrations…")

    # The element is defined, and every API call it makes is held: its own frame and loading state.
    script.open()
    loading = ui.component.locator("p.loading")
    await expect(ui.component.locator("h2[part=heading]")).to_have_text("Connections")
    await expect(loading).to_be_visible()
    await expect(loading).to_have_attribute("role", "status")
    await expect(page_loading).to_be_hidden()
    for _ in range(300):  # the element has asked; its answers are what it waits for
        if api.held:
            break
        await asyncio.sleep(0.05)
    assert api.held, "the element asked the API for nothing"
    await expect(ui.card(made["id"])).to_have_count(0)

    # The answers arrive: the cards replace the loading state.
    api.open()
    await expect(ui.card(made["id"])).to_be_visible()
    await expect(loading).to_be_hidden()
    await ui.wait_live()
