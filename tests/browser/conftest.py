"""Browser fixtures: Debian's Chromium driven by Playwright, against the in-process system.

Playwright's own browser download does not work here, so the tests drive ``/usr/bin/chromium``
(``make test``'s set-up installs it when missing).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from tests.system import System, start_system

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Long enough for a loaded 2-core CI machine; every wait ends as soon as its condition holds.
expect.set_options(timeout=15_000)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make setup` (it installs Debian's chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class UI:
    """One browser tab on the integrations page of one system."""

    system: System
    page: Page
    navigations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def open(self, account_id: str = "acct-test", *, token: str | None = None, query: str = "") -> None:
        token = token if token is not None else await self.system.browser_token(account_id)
        await self.page.goto(f"{self.system.api_url}/ui/?token={token}{query}")

    @property
    def component(self) -> Locator:
        return self.page.locator("integration-status")

    def card(self, cid: str) -> Locator:
        return self.page.locator(f'[data-connection-id="{cid}"]')

    async def wait_live(self) -> None:
        await expect(self.component).to_have_attribute("data-link", "live")
        await expect(self.component).to_have_attribute("data-ready", "")

    async def mark_document(self) -> None:
        """Tag this document, to prove later that it was never replaced by a reload."""
        await self.page.evaluate("window.__sameDocument = true")

    async def same_document(self) -> bool:
        return bool(await self.page.evaluate("window.__sameDocument === true"))


async def _new_ui(system: System, browser: Browser) -> tuple[UI, Callable[[], Awaitable[None]]]:
    context = await browser.new_context(viewport={"width": 760, "height": 900})
    page = await context.new_page()
    ui = UI(system, page)
    # Documents loaded (a reload counts; the page replacing its own address, to drop its token, does not).
    page.on("load", lambda loaded: ui.navigations.append(loaded.url))
    page.on("pageerror", lambda error: ui.errors.append(str(error)))
    return ui, context.close


@pytest.fixture
async def ui(system: System, browser: Browser) -> AsyncIterator[UI]:
    opened, close = await _new_ui(system, browser)
    yield opened
    await close()
    assert not opened.errors, f"uncaught errors in the page: {opened.errors}"


UIFactory = Callable[..., AbstractAsyncContextManager[UI]]


@pytest.fixture
def ui_with(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None, browser: Browser
) -> UIFactory:
    """A page on a system started with the status API settings given (e.g. a short test window)."""

    @asynccontextmanager
    async def factory(**status_api: Any) -> AsyncIterator[UI]:
        async with start_system(amqp_url, redis_url, prefix, status_api=status_api) as system:
            opened, close = await _new_ui(system, browser)
            try:
                yield opened
            finally:
                await close()
            assert not opened.errors, f"uncaught errors in the page: {opened.errors}"

    return factory
