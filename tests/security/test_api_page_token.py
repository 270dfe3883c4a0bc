"""The integrations page, as someone who later reads the browser's history or the address bar: the
token the page was opened with is gone from its address once the page has read it."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser.conftest import UI, browser, ui  # noqa: F401  (fixtures for this module)


async def test_the_page_removes_its_token_from_the_address(ui: UI) -> None:  # noqa: F811
    conn = await ui.system.create()
    token = await ui.system.browser_token()
    await ui.open(token=token, query=f"&connection={conn['id']}")
    await ui.wait_live()
    await expect(ui.card(conn["id"])).to_have_attribute("data-state", "pending")
    assert "token" not in ui.page.url and token not in ui.page.url
    assert ui.page.url.endswith(f"/ui/?connection={conn['id']}")  # the rest of the address stays
    assert token not in await ui.page.evaluate("window.location.href + document.URL")
    # The history entry was replaced, not added to: nothing in the tab's history has the token.
    await ui.page.go_back()
    assert ui.page.url == "about:blank"
    await ui.page.go_forward()
    assert ui.page.url.endswith(f"/ui/?connection={conn['id']}")
    # Kept nowhere else either: the page reloaded from that address asks for a new link.
    await ui.page.reload()
    await expect(ui.component).to_have_attribute("data-error", "missing_token")
