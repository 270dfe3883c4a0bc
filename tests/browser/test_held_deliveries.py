"""The integrations page shows held deliveries (never their content) with a "Re-verify" button, and says
so when a connection's deliveries are signed with the secret of the account's other connection. Real
browser (Debian's Chromium), whole running system, webhooks signed by the ``standardwebhooks`` package."""

from __future__ import annotations

import base64
import os
import uuid
from typing import Any

import orjson
import pytest
from playwright.async_api import expect

from tests.browser.conftest import UI
from tests.signing import standard_webhooks_headers
from tests.system import System

pytestmark = pytest.mark.slow


async def send(system: System, conn: dict[str, Any], secret: str, marker: str = "") -> int:
    body = orjson.dumps({"type": "invoice.paid", "data": {"note": marker}})
    headers = standard_webhooks_headers(secret, body, f"msg_{uuid.uuid4().hex}")
    status, _ = await system.post_hook(conn["webhook_url"], body, headers)
    return status


def account() -> str:
    return f"acct-{uuid.uuid4().hex[:8]}"


async def test_held_deliveries_show_and_recover_after_the_fix(ui: UI) -> None:
    acct = account()
    conn = await ui.system.create(account_id=acct)
    await ui.open(acct)
    await ui.wait_live()
    await ui.mark_document()
    card = ui.card(conn["id"])
    held = card.locator(".held")
    await expect(held).to_be_hidden()

    provider_secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    marker = f"PRIVATE-{uuid.uuid4().hex}"
    assert await send(ui.system, conn, provider_secret, marker) == 401
    await expect(held).to_be_visible()
    await expect(held.locator(".held-item")).to_have_count(1)
    await expect(held.locator(".held-item")).to_contain_text("Rejected: signature mismatch")
    assert marker not in await ui.page.content()
    assert marker not in await card.inner_text()

    # Re-verify with the secret still wrong: nothing verifies, and the page says so.
    await held.get_by_role("button", name="Re-verify").click()
    await expect(card.locator(".note")).to_have_text("0 of 1 held delivery verified now; 1 still do not.")
    await expect(card).to_have_attribute("data-state", "pending")

    # The product reconnects with the secret the provider signs with: the held event connects it, live.
    status, _ = await ui.system.api("POST", f"/v1/connections/{conn['id']}/reconnect",
                                    json={"secret": provider_secret})
    assert status == 200
    await expect(card).to_have_attribute("data-state", "connected")
    await expect(held).to_be_hidden()
    await expect(card.locator(".delivery[data-outcome=verified]")).to_have_count(1)
    assert await ui.same_document()


async def test_the_other_connections_secret_is_pointed_out(ui: UI) -> None:
    acct = account()
    billing = await ui.system.create(account_id=acct)
    shipping = await ui.system.create(account_id=acct)
    await ui.open(acct)
    await ui.wait_live()
    assert await send(ui.system, billing, shipping["secret"]) == 401
    hint = ui.card(billing["id"]).locator(".other-connection")
    await expect(hint).to_be_visible()
    await expect(hint).to_contain_text("signed with the secret of your other Standard Webhooks connection")
    await expect(hint).to_contain_text(shipping["webhook_url"])
    await expect(ui.card(billing["id"]).locator(".held-item")).to_contain_text("secret of other connection")
    await expect(ui.card(shipping["id"]).locator(".other-connection")).to_be_hidden()
    # A verified event afterwards (the URLs put right) clears the hint.
    assert await send(ui.system, billing, billing["secret"]) == 202
    await expect(hint).to_be_hidden()
