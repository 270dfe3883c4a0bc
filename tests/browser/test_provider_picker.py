"""The provider picker in a real browser (Debian's Chromium), on the whole running system: a page whose
token carries a create grant searches the catalog, creates a connection, shows its setup beside its live
badge, and the badge turns connected when the provider's first signed webhook arrives; a page whose token
carries no grant shows no picker and is refused by the API with a reason code."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

import orjson
import pytest
import stripe
from playwright.async_api import Locator, expect

from tests.browser.conftest import UI
from tests.browser.test_integrations_page import account
from tests.signing import standard_webhooks_headers
from tests.system import System

pytestmark = pytest.mark.slow
EVENT = orjson.dumps({"type": "customer.created", "data": {"id": "cus_1"}})


async def grant_token(system: System, acct: str, **create: Any) -> str:
    status, data = await system.api("POST", f"/v1/accounts/{acct}/tokens", json={"create": create})
    assert status == 201, data
    return str(data["token"])


async def account_connections(system: System, acct: str) -> list[dict[str, Any]]:
    status, data = await system.api("GET", "/v1/connections", params={"account_id": acct})
    assert status == 200
    return list(data["connections"])


async def _paste_stripes_secret_and_send_an_event(ui: UI, panel: Locator, webhook_url: str) -> str:
    """In a setup panel: a secret not in Stripe's format is refused, Stripe's is saved (the field then
    empties); an event Stripe's SDK signs with it is accepted. Returns the secret."""
    field = panel.get_by_label("Signing secret from Stripe")
    await field.fill("not a stripe secret")
    await field.press("Enter")
    await expect(panel.locator(".setup-secret-status")).to_have_attribute("data-outcome", "refused")
    stripes_secret = "whsec_" + secrets.token_hex(16)
    await field.fill(stripes_secret)
    await panel.get_by_role("button", name="Save secret").click()
    await expect(panel.locator(".setup-secret-status")).to_have_attribute("data-outcome", "saved")
    await expect(field).to_have_value("")

    body = orjson.dumps({"id": f"evt_{uuid.uuid4().hex[:10]}", "type": "payment_intent.succeeded"})
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), stripes_secret, int(time.time()))
    status, _ = await ui.system.post_hook(webhook_url, body,
                                          {"Stripe-Signature": header, "Content-Type": "application/json"})
    assert status == 202
    return stripes_secret


async def _page_may_not_set_the_secret(ui: UI, token: str, cid: str) -> None:
    """From the page itself (its origin, its fetch), ``token`` asks to set ``cid``'s secret: 403."""
    answer = await ui.page.evaluate("""async ([token, id]) => {
      const r = await fetch(`/v1/connections/${id}/reconnect`, { method: 'POST', headers: {
        Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ secret: 'whsec_' + 'ab'.repeat(16) }) });
      return { status: r.status, body: await r.json() };
    }""", [token, cid])
    assert answer["status"] == 403 and answer["body"]["error"]["code"] == "service_token_required", answer


async def test_search_narrows_and_a_pick_creates_a_connection_that_turns_connected_live(ui: UI) -> None:
    acct = account()
    await ui.open(token=await grant_token(ui.system, acct, limit=2))
    await ui.wait_live()
    picker = ui.component.locator(".picker")
    await expect(picker).to_be_visible()
    picks = picker.locator(".pick:visible")
    catalog = (await ui.system.api("GET", "/v1/providers"))[1]["providers"]
    await expect(picks).to_have_count(len(catalog))
    search = picker.get_by_label("Search providers by name or category")

    await search.fill("payments")  # a category
    payments = [p for p in catalog if p["category"] == "payments"]
    await expect(picks).to_have_count(len(payments))
    assert set(await picks.evaluate_all("els => els.map(e => e.dataset.category)")) == {"payments"}
    await expect(picker.locator(".picker-count")).to_have_text(f"{len(payments)} of {len(catalog)} providers")
    await search.fill("stri")  # a name, partly typed
    await expect(picks).to_have_count(1)
    await expect(picks).to_have_attribute("data-provider", "stripe")
    await search.fill("no such provider anywhere")
    await expect(picks).to_have_count(0)
    await expect(picker.locator(".picker-empty")).to_be_visible()
    await search.fill("standard webhooks")
    await expect(picks).to_have_count(1)
    await ui.mark_document()
    await ui.page.evaluate("""() => { window.__created = [];
      document.addEventListener('integration-status:created', (e) => window.__created.push(e.detail)); }""")

    await picks.click()
    setup = picker.locator(".setup")
    await expect(setup).to_be_visible()
    await expect(setup.get_by_role("heading", level=4)).to_have_text("Set up Standard Webhooks")
    await expect(setup.get_by_role("heading", level=4)).to_be_focused()
    [created] = await account_connections(ui.system, acct)
    assert created["provider"] == "standard-webhooks" and created["state"] == "pending"
    await expect(setup).to_have_attribute("data-setup-for", created["id"])
    await expect(setup.locator(".setup-url")).to_have_text(created["webhook_url"])
    await expect(setup.locator(".badge")).to_have_text("Pending")
    await expect(setup.locator(".setup-steps li")).to_have_count(1)
    await expect(setup.locator(".setup-steps")).to_contain_text("give the sender the webhook URL and the secret")
    await expect(ui.card(created["id"])).to_have_attribute("data-state", "pending")  # its card, in the list too
    await expect(ui.component.locator("[data-announce=polite]")).to_contain_text("connection created")
    [told] = await ui.page.evaluate("window.__created")  # the host page hears of it, without the secret
    assert told["connection"]["id"] == created["id"] and "secret" not in told["connection"]

    # The provider signs with the secret the page showed, and sends to the URL it showed.
    secret = await setup.locator(".setup-secret").text_content()
    url = await setup.locator(".setup-url").text_content()
    assert secret and secret.startswith("whsec_") and url
    headers = standard_webhooks_headers(secret, EVENT, f"msg_{uuid.uuid4().hex}")
    assert (await ui.system.post_hook(url, EVENT, headers))[0] == 202

    await expect(setup).to_have_attribute("data-state", "connected")
    await expect(setup.locator(".badge")).to_have_text("Connected")
    await expect(setup.locator(".badge .icon-check")).to_be_visible()
    await expect(ui.card(created["id"])).to_have_attribute("data-state", "connected")
    assert await ui.same_document(), "the page was reloaded"
    assert len(ui.navigations) == 1, f"the page navigated: {ui.navigations}"

    # Closing the panel takes the secret off the page; the card never had it.
    await setup.get_by_role("button", name="Done").click()
    await expect(setup).to_be_hidden()
    assert secret not in await ui.page.evaluate(
        "() => document.querySelector('integration-status').shadowRoot.innerHTML")


async def test_a_token_without_the_grant_sees_no_picker_and_is_refused(ui: UI) -> None:
    acct = account()
    token = await ui.system.browser_token(acct)
    await ui.open(token=token)
    await ui.wait_live()
    await expect(ui.component.locator(".no-connections")).to_be_visible()
    await expect(ui.component.locator(".picker")).to_be_hidden()
    await expect(ui.component.locator(".pick")).to_have_count(0)
    answer = await ui.page.evaluate("""async ([token, acct]) => {
      const r = await fetch('/v1/connections', { method: 'POST', headers: { Authorization: `Bearer ${token}`,
        'Content-Type': 'application/json' }, body: JSON.stringify({ account_id: acct, provider: 'github' }) });
      return { status: r.status, body: await r.json() };
    }""", [token, acct])
    assert answer["status"] == 403
    assert answer["body"]["error"]["code"] == "create_not_allowed"
    assert await account_connections(ui.system, acct) == []


async def test_the_grant_limits_what_the_picker_offers_and_creates(ui: UI) -> None:
    acct = account()
    await ui.open(token=await grant_token(ui.system, acct, providers=["github", "standard-webhooks"], limit=1))
    await ui.wait_live()
    picker = ui.component.locator(".picker")
    picks = picker.locator(".pick:visible")
    await expect(picks).to_have_count(2)  # only the providers the grant names
    assert sorted(await picks.evaluate_all("els => els.map(e => e.dataset.provider)")) == [
        "github", "standard-webhooks"]

    # By keyboard: the search field, then the first match.
    search = picker.get_by_label("Search providers by name or category")
    await search.fill("developer")
    await search.focus()
    await ui.page.keyboard.press("Tab")
    await expect(picker.locator('.pick[data-provider="github"]')).to_be_focused()
    await ui.page.keyboard.press("Enter")
    await expect(picker.locator(".setup h4")).to_have_text("Set up GitHub")
    await expect(picker.locator(".setup-steps li")).to_have_count(2)
    [created] = await account_connections(ui.system, acct)
    assert created["provider"] == "github"

    # The grant is spent: the picks say so, pressing one creates nothing, and the API refuses anyway.
    spent = picker.locator('.pick[data-provider="standard-webhooks"]')
    await expect(spent).to_have_attribute("aria-disabled", "true")
    await expect(picker.locator(".picker-note")).to_contain_text("may create no more connections")
    posts: list[str] = []
    ui.page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    await spent.click(force=True)  # aria-disabled keeps it focusable; a press does nothing
    # A marker POST after the press: once it is seen, a POST the press made would have been seen first.
    await ui.page.evaluate("() => fetch('/v1/marker', { method: 'POST' })")
    assert posts == [posts[-1]] and posts[-1].endswith("/v1/marker"), posts
    assert len(await account_connections(ui.system, acct)) == 1


async def test_a_provider_that_issues_its_secret_gets_it_pasted_on_the_page(ui: UI) -> None:
    """Stripe issues the signing secret only once the endpoint exists: create, paste the URL there, then
    paste Stripe's secret here; Stripe's signed event then turns the badge connected."""
    acct = account()
    await ui.open(token=await grant_token(ui.system, acct, providers=["stripe", "meta"], limit=1))
    await ui.wait_live()
    picker = ui.component.locator(".picker")
    # A provider whose setup needs settings is left to the product's own flow.
    await expect(picker.locator('.pick[data-provider="meta"]')).to_have_attribute("aria-disabled", "true")
    await expect(picker.locator('.pick[data-provider="meta"]')).to_contain_text("set up in the product")
    await picker.locator('.pick[data-provider="stripe"]').click()
    setup = picker.locator(".setup")
    await expect(setup.locator(".badge")).to_have_text("Pending")
    await expect(setup.locator(".setup-secret")).to_have_count(0)  # we generated none: Stripe issues it
    [created] = await account_connections(ui.system, acct)

    stripes_secret = await _paste_stripes_secret_and_send_an_event(ui, setup, created["webhook_url"])
    await expect(setup).to_have_attribute("data-state", "connected")
    await expect(ui.card(created["id"])).to_have_attribute("data-state", "connected")
    assert stripes_secret not in await ui.page.evaluate(
        "() => document.querySelector('integration-status').shadowRoot.innerHTML")


async def test_after_done_the_card_leads_back_to_the_setup_and_takes_the_providers_secret(ui: UI) -> None:
    """A person who pressed "Done" before Stripe gave them the secret: the card's "Setup steps" show the
    provider's steps and URL again, and the field for Stripe's secret while the connection never verified;
    Stripe's signed event then turns the badge connected, live, and the field goes."""
    acct = account()
    await ui.open(token=await grant_token(ui.system, acct, providers=["stripe"], limit=1))
    await ui.wait_live()
    await ui.mark_document()
    picker = ui.component.locator(".picker")
    await picker.locator('.pick[data-provider="stripe"]').click()
    setup = picker.locator(".setup")
    await expect(setup.locator(".badge")).to_have_text("Pending")
    [created] = await account_connections(ui.system, acct)
    await setup.get_by_role("button", name="Done").click()
    await expect(setup).to_be_hidden()

    card = ui.card(created["id"])
    toggle = card.get_by_role("button", name="Setup steps")
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    steps = card.locator(".setup-again")
    await expect(steps).to_be_hidden()
    await toggle.click()
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    await expect(steps).to_be_visible()
    stripe_entry = next(p for p in (await ui.system.api("GET", "/v1/providers"))[1]["providers"]
                        if p["name"] == "stripe")
    await expect(steps.get_by_role("heading", level=4)).to_have_text("Set up Stripe")
    await expect(steps.locator(".setup-steps li")).to_have_text(stripe_entry["setup"])
    await expect(steps.locator(".setup-url")).to_have_text(created["webhook_url"])
    await expect(steps.locator(".setup-test")).to_contain_text(stripe_entry["test_instructions"])

    stripes_secret = await _paste_stripes_secret_and_send_an_event(ui, steps, created["webhook_url"])
    await expect(card).to_have_attribute("data-state", "connected")
    await expect(card.locator(".badge").first).to_have_text("Connected")
    # It verified: the server would refuse a secret from this token now, so the field is gone.
    await expect(steps.locator(".setup-secret-form")).to_have_count(0)
    await expect(steps.locator(".setup-secret-done")).to_be_visible()
    assert await ui.same_document(), "the page was reloaded"
    assert stripes_secret not in await ui.page.evaluate(
        "() => document.querySelector('integration-status').shadowRoot.innerHTML")


async def test_a_generated_secret_is_never_shown_again_and_other_cards_offer_no_field(ui: UI) -> None:
    """The card's steps never show a secret we generated (it was shown once, in the setup panel), and a
    connection this page did not create offers no field: the server would refuse its token."""
    acct = account()
    elsewhere = await ui.system.create(account_id=acct, provider="stripe", secret="whsec_" + secrets.token_hex(16))
    token = await grant_token(ui.system, acct, providers=["standard-webhooks"], limit=1)
    await ui.open(token=token)
    await ui.wait_live()
    picker = ui.component.locator(".picker")
    await picker.locator('.pick[data-provider="standard-webhooks"]').click()
    setup = picker.locator(".setup")
    secret = await setup.locator(".setup-secret").text_content()
    assert secret and secret.startswith("whsec_")
    created = [c for c in await account_connections(ui.system, acct) if c["id"] != elsewhere["id"]][0]
    await setup.get_by_role("button", name="Done").click()

    for conn in (created, elsewhere):
        card = ui.card(conn["id"])
        await card.get_by_role("button", name="Setup steps").click()
        steps = card.locator(".setup-again")
        await expect(steps.locator(".setup-url")).to_have_text(conn["webhook_url"])
        await expect(steps.locator(".setup-secret-note")).to_contain_text("never shown again")
        await expect(steps.locator(".setup-secret-form")).to_have_count(0)
    assert secret not in await ui.page.evaluate(
        "() => document.querySelector('integration-status').shadowRoot.innerHTML")
    # What the page offers matches the server: this token may not set the other connection's secret.
    await _page_may_not_set_the_secret(ui, token, elsewhere["id"])


async def test_a_renewed_token_offers_no_secret_field_for_what_the_old_one_created(ui: UI) -> None:
    """The server takes the provider's secret only from the token that created the connection: once the
    product renews the page's token, the card's steps stop offering the field, and the API agrees."""
    acct = account()
    token = await grant_token(ui.system, acct, providers=["stripe"], limit=1)
    await ui.open(token=token)
    await ui.wait_live()
    picker = ui.component.locator(".picker")
    await picker.locator('.pick[data-provider="stripe"]').click()
    await picker.locator(".setup").get_by_role("button", name="Done").click()
    [created] = await account_connections(ui.system, acct)
    card = ui.card(created["id"])
    await card.get_by_role("button", name="Setup steps").click()
    steps = card.locator(".setup-again")
    await expect(steps.get_by_label("Signing secret from Stripe")).to_be_visible()

    # Another grant, so another token: two mints of the same grant in the same second are the same token.
    fresh = await grant_token(ui.system, acct, providers=["stripe"], limit=2)
    assert fresh != token
    await ui.component.evaluate("(el, token) => el.setAttribute('token', token)", fresh)
    await expect(steps.locator(".setup-secret-form")).to_have_count(0)
    await expect(steps.locator(".setup-secret-note")).to_contain_text("never shown again")
    await expect(steps.locator(".setup-url")).to_have_text(created["webhook_url"])  # the steps stay
    await _page_may_not_set_the_secret(ui, fresh, created["id"])
