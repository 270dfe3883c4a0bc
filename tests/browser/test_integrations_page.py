"""The integrations page in a real browser (Debian's Chromium), on the whole running system.

What the page promises, each shown by the tests named here:

  1. a clear success state without a page refresh  -> test_badge_turns_connected_without_a_reload
                                                       test_a_new_connection_appears_live
  2. failed / pending past its deadline looks
     different from success                         -> test_pending_past_its_deadline_turns_failed
                                                       test_failed_after_bad_signatures_says_why
                                                       test_failing_and_silent_look_distinct
  3. a test event to verify the connection          -> test_send_test_event_passes
                                                       test_send_test_event_from_pending_with_the_keyboard
                                                       test_send_test_event_fails_when_nothing_arrives
  4. the connect button follows the state           -> test_the_button_follows_the_state
                                                       test_failed_offers_reconnect_which_waits_again
  5. the status persists across sessions            -> test_status_persists_across_sessions
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aio_pika
import orjson
import pytest
from playwright.async_api import expect

from tests.browser.conftest import UI, UIFactory
from tests.signing import standard_webhooks_headers
from tests.system import System

pytestmark = pytest.mark.slow
EVENT = orjson.dumps({"type": "invoice.paid", "data": {"amount": 1200}})


async def send_event(system: System, conn: dict[str, Any], secret: str | None = None) -> int:
    """A webhook signed by the ``standardwebhooks`` package, as the provider would send it."""
    headers = standard_webhooks_headers(secret or conn["secret"], EVENT, f"msg_{uuid.uuid4().hex}")
    status, _ = await system.post_hook(conn["webhook_url"], EVENT, headers)
    return status


def account() -> str:
    return f"acct-{uuid.uuid4().hex[:8]}"


# --- 1. success shows without a refresh ------------------------------------------------------

WATCH_CONNECTED = """cid => {
  const card = document.querySelector('integration-status').shadowRoot
    .querySelector(`[data-connection-id="${cid}"]`);
  window.__connectedAt = null;
  new MutationObserver(() => {
    if (card.dataset.state === 'connected' && window.__connectedAt === null) window.__connectedAt = Date.now();
  }).observe(card, { attributes: true, attributeFilter: ['data-state'] });
}"""


async def test_badge_turns_connected_without_a_reload(ui: UI, capsys: pytest.CaptureFixture[str]) -> None:
    conn = await ui.system.create()
    await ui.open()
    await ui.wait_live()
    card = ui.card(conn["id"])
    await expect(card).to_have_attribute("data-state", "pending")
    await expect(card.locator(".badge")).to_have_text("Pending")
    await expect(card.locator(".badge .icon-spinner")).to_be_visible()
    await expect(card.get_by_role("heading", level=3)).to_have_text("Standard Webhooks")  # the provider's title
    await ui.mark_document()
    await ui.page.evaluate(WATCH_CONNECTED, conn["id"])

    sent_at_ms = time.time() * 1000
    assert await send_event(ui.system, conn) == 202

    await expect(card).to_have_attribute("data-state", "connected")
    await expect(card.locator(".badge")).to_have_text("Connected")
    await expect(card.locator(".badge .icon-check")).to_be_visible()
    await expect(card.locator(".badge .icon-spinner")).to_have_count(0)
    await expect(ui.component.locator("[data-announce=polite]")).to_contain_text("Connected")
    await expect(card.locator(".delivery[data-outcome=verified]")).to_contain_text("invoice.paid")
    assert await ui.same_document(), "the page was reloaded"
    assert len(ui.navigations) == 1, f"the page navigated: {ui.navigations}"

    changed_at_ms = await ui.page.evaluate("window.__connectedAt")
    with capsys.disabled():
        print(f"\n[latency] signed webhook sent -> badge 'Connected' in the browser: "
              f"{changed_at_ms - sent_at_ms:.0f} ms")


async def test_a_new_connection_appears_live(ui: UI) -> None:
    acct = account()
    await ui.open(acct)
    await ui.wait_live()
    await expect(ui.component.locator(".no-connections")).to_be_visible()
    await ui.mark_document()

    conn = await ui.system.create(account_id=acct)
    card = ui.card(conn["id"])
    await expect(card).to_have_attribute("data-state", "pending")
    await expect(card.locator(".badge")).to_have_text("Pending")
    await expect(ui.component.locator(".no-connections")).to_be_hidden()
    await expect(card.locator(".url")).to_have_text(conn["webhook_url"])

    assert await send_event(ui.system, conn) == 202
    await expect(card).to_have_attribute("data-state", "connected")
    assert await ui.same_document()
    assert len(ui.navigations) == 1


async def test_only_the_tokens_account_is_shown(ui: UI) -> None:
    mine, theirs = account(), account()
    own = await ui.system.create(account_id=mine)
    await ui.system.create(account_id=theirs)
    await ui.open(mine)
    await ui.wait_live()
    await expect(ui.card(own["id"])).to_be_visible()
    other = await ui.system.create(account_id=theirs)  # created while the stream is open
    mine_later = await ui.system.create(account_id=mine)
    await expect(ui.card(mine_later["id"])).to_be_visible()
    await expect(ui.component.locator("[data-connection-id]")).to_have_count(2)
    await expect(ui.card(other["id"])).to_have_count(0)


# --- 2. failed and unhealthy states are distinct ---------------------------------------------

async def _badge_look(ui: UI, cid: str) -> tuple[str, str, str]:
    badge = ui.card(cid).locator(".badge")
    colour = await badge.evaluate("el => getComputedStyle(el).color")
    shape = await badge.locator(".icon").get_attribute("class") or ""
    return (await badge.inner_text()).strip(), colour, shape


async def test_pending_past_its_deadline_turns_failed(ui: UI) -> None:
    ok = await ui.system.create()
    waiting = await ui.system.create()
    late = await ui.system.create(timeout_s=2)
    assert await send_event(ui.system, ok) == 202
    await ui.system.wait_for(ok["id"], lambda v: v["state"] == "connected")
    await ui.open()
    await ui.wait_live()
    await ui.mark_document()

    card = ui.card(late["id"])
    await expect(card).to_have_attribute("data-state", "failed")
    await expect(card.locator(".badge")).to_have_text("Failed")
    await expect(card.locator(".summary")).to_contain_text("Nothing arrived from the provider")
    await expect(ui.component.locator("[data-announce=assertive]")).to_contain_text("Failed")

    looks = {cid: await _badge_look(ui, cid) for cid in (ok["id"], waiting["id"], late["id"])}
    words, colours, shapes = (set(part) for part in zip(*looks.values(), strict=True))
    assert words == {"Connected", "Pending", "Failed"}
    assert len(colours) == 3, f"each state needs its own colour: {looks}"
    assert len(shapes) == 3, f"each state needs its own icon shape, not only a colour: {looks}"
    assert await ui.same_document()


async def test_failed_after_bad_signatures_says_why(ui: UI) -> None:
    conn = await ui.system.create(timeout_s=3)
    await ui.open()
    await ui.wait_live()
    card = ui.card(conn["id"])
    wrong_secret = (await ui.system.create(account_id=account()))["secret"]
    assert await send_event(ui.system, conn, secret=wrong_secret) == 401
    await expect(card.locator(".detail")).to_contain_text("signature")  # why, before the deadline
    await expect(card).to_have_attribute("data-state", "pending")
    await expect(card).to_have_attribute("data-state", "failed")
    await expect(card.locator(".summary")).to_contain_text("signatures do not match your signing secret")
    await expect(card.locator(".delivery[data-outcome=rejected] .why")).to_contain_text("signature")


async def test_failing_and_silent_look_distinct(ui: UI) -> None:
    failing = await ui.system.create()
    silent = await ui.system.create(expected_interval_s=1)
    for conn in (failing, silent):
        assert await send_event(ui.system, conn) == 202
        await ui.system.wait_for(conn["id"], lambda v: v["state"] == "connected")
    await asyncio.sleep(1.2)  # longer than the silent connection's expected interval
    await ui.open()
    await ui.wait_live()

    await expect(ui.card(silent["id"])).to_have_attribute("data-display", "silent")
    silent_card = ui.card(silent["id"])
    await expect(silent_card.locator(".badge")).to_have_text("Silent")
    await expect(silent_card.locator(".badge .icon-clock")).to_be_visible()
    # "Connected" names the state and does nothing; what it stands for has its own button.
    await expect(silent_card.locator(".cta.primary")).to_have_attribute("aria-disabled", "true")
    await expect(silent_card.get_by_role("button", name="Reconnect")).to_be_visible()
    await expect(silent_card.get_by_role("button", name="Send test event")).to_be_visible()
    card = ui.card(failing["id"])
    await expect(card).to_have_attribute("data-display", "connected")
    wrong_secret = (await ui.system.create(account_id="acct-elsewhere"))["secret"]
    for _ in range(3):  # failing: sustained rejection without verified traffic (3 in a row)
        assert await send_event(ui.system, failing, secret=wrong_secret) == 401

    await expect(card).to_have_attribute("data-display", "failing")
    await expect(card).to_have_attribute("data-state", "connected")
    await expect(card.locator(".badge")).to_have_text("Failing")
    await expect(card.locator(".summary")).to_contain_text("signature")
    await expect(card.locator(".delivery[data-outcome=rejected]").first).to_be_visible()
    looks = {await _badge_look(ui, failing["id"]), await _badge_look(ui, silent["id"])}
    assert len({look[1] for look in looks}) == 2 and len({look[2] for look in looks}) == 2, looks


# --- 3. a test event proves the connection -----------------------------------------------------

async def test_send_test_event_passes(ui: UI) -> None:
    conn = await ui.system.create()
    assert await send_event(ui.system, conn) == 202
    await ui.system.wait_for(conn["id"], lambda v: v["state"] == "connected")
    await ui.open()
    await ui.wait_live()
    card = ui.card(conn["id"])
    await expect(card.locator(".cta.secondary")).to_have_text("Reconnect")
    await card.get_by_role("button", name="Send test event").click()
    panel = card.locator(".test")
    await expect(panel).to_have_attribute("data-test-state", "waiting")

    assert await send_event(ui.system, conn) == 202
    await expect(panel).to_have_attribute("data-test-state", "passed")
    await expect(panel).to_contain_text("Test passed")
    await expect(ui.component.locator("[data-announce=polite]")).to_contain_text("Test passed")


async def test_send_test_event_from_pending_with_the_keyboard(ui: UI) -> None:
    conn = await ui.system.create()
    await ui.open()
    await ui.wait_live()
    card = ui.card(conn["id"])
    button = card.get_by_role("button", name="Send test event")
    await expect(button).to_be_visible()
    for _ in range(20):  # Tab through the page until the button has focus
        await ui.page.keyboard.press("Tab")
        if await button.evaluate("el => el.getRootNode().activeElement === el"):
            break
    else:
        raise AssertionError("'Send test event' cannot be reached with Tab")
    await ui.page.keyboard.press("Enter")
    panel = card.locator(".test")
    await expect(panel).to_have_attribute("data-test-state", "waiting")
    await expect(panel.locator(".instructions")).not_to_be_empty()
    await expect(button).to_have_attribute("aria-disabled", "true")  # one test at a time

    assert await send_event(ui.system, conn) == 202
    await expect(panel).to_have_attribute("data-test-state", "passed")
    await expect(card).to_have_attribute("data-state", "connected")


async def test_send_test_event_fails_when_nothing_arrives(ui_with: UIFactory) -> None:
    async with ui_with(test_default_timeout_s=2) as ui:
        conn = await ui.system.create()
        await ui.open()
        await ui.wait_live()
        card = ui.card(conn["id"])
        await card.get_by_role("button", name="Send test event").click()
        panel = card.locator(".test")
        await expect(panel).to_have_attribute("data-test-state", "waiting")
        await expect(panel).to_have_attribute("data-test-state", "failed")
        await expect(panel).to_contain_text("Test failed")
        await expect(panel.locator("p").nth(1)).not_to_be_empty()
        await expect(ui.component.locator("[data-announce=assertive]")).to_contain_text("Test failed")


# --- 4. the connect button follows the state ---------------------------------------------------

async def test_the_button_follows_the_state(ui: UI) -> None:
    conn = await ui.system.create()
    await ui.open()
    await ui.wait_live()
    card = ui.card(conn["id"])
    await ui.mark_document()
    primary, secondary = card.locator(".cta.primary"), card.locator(".cta.secondary")
    await expect(primary).to_have_text("Waiting for first event…")
    await expect(secondary).to_have_text("Send test event")

    assert await send_event(ui.system, conn) == 202
    await expect(primary).to_have_text("Connected")
    await expect(primary.locator(".icon-check")).to_be_visible()
    await expect(secondary).to_have_text("Reconnect")

    await secondary.click()
    await expect(card).to_have_attribute("data-state", "pending")
    await expect(primary).to_have_text("Waiting for first event…")

    status, _ = await ui.system.api("DELETE", f"/v1/connections/{conn['id']}")
    assert status == 200
    await expect(card).to_have_attribute("data-state", "disconnected")
    await expect(card.locator(".badge")).to_have_text("Disconnected")
    await expect(primary).to_have_text("Connect")
    await expect(secondary).to_be_hidden()
    # "Connect" hands over to the product's own setup flow, through a DOM event the host page handles.
    await ui.page.evaluate("""() => document.addEventListener('integration-status:connect',
        (e) => { window.__connectAsked = e.detail.connection.id; })""")
    await primary.click()
    assert await ui.page.evaluate("window.__connectAsked") == conn["id"]
    await expect(card.locator(".note")).to_contain_text("setup flow")
    assert await ui.same_document()


async def test_failed_offers_reconnect_which_waits_again(ui: UI) -> None:
    conn = await ui.system.create(timeout_s=1)
    await ui.open()
    await ui.wait_live()
    card = ui.card(conn["id"])
    await expect(card).to_have_attribute("data-state", "failed")
    reconnect = card.locator(".cta.primary")
    await expect(reconnect).to_have_text("Reconnect")
    await reconnect.click()
    await expect(card).to_have_attribute("data-state", "pending")
    assert await send_event(ui.system, conn) == 202
    await expect(card).to_have_attribute("data-state", "connected")


# --- 5. the status persists across sessions ----------------------------------------------------

async def test_status_persists_across_sessions(ui: UI) -> None:
    acct = account()
    conn = await ui.system.create(account_id=acct)
    await ui.open(acct)
    await ui.wait_live()
    assert await send_event(ui.system, conn) == 202
    await expect(ui.card(conn["id"])).to_have_attribute("data-state", "connected")
    await ui.page.context.close()  # the user leaves: cookies, storage and the stream are gone

    browser = ui.page.context.browser
    assert browser is not None
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(f"{ui.system.api_url}/ui/?token={await ui.system.browser_token(acct)}")
        card = page.locator(f'[data-connection-id="{conn["id"]}"]')
        await expect(card).to_have_attribute("data-state", "connected")
        await expect(card.locator(".badge")).to_have_text("Connected")
        await expect(card.locator(".cta.primary")).to_have_text("Connected")
        await expect(card.locator(".delivery[data-outcome=verified]")).to_have_count(1)
    finally:
        await context.close()


# --- tokens ------------------------------------------------------------------------------------

async def test_expired_token_shows_a_clear_message(ui: UI) -> None:
    await ui.system.create()
    token = await ui.system.browser_token(ttl_s=1)
    await asyncio.sleep(1.2)
    await ui.open(token=token)
    notice = ui.component.locator(".notice")
    await expect(notice).to_have_text("This link has expired — reload from the product to get a new one.")
    await expect(notice).to_have_attribute("role", "alert")
    await expect(ui.component).to_have_attribute("data-error", "token_expired")
    await expect(ui.component.locator("[data-connection-id]")).to_have_count(0)


async def test_forged_or_missing_token_shows_a_clear_message(ui: UI) -> None:
    token = await ui.system.browser_token()
    await ui.open(token=token[:-4] + "AAAA")
    await expect(ui.component).to_have_attribute("data-error", "invalid_token")
    await expect(ui.component.locator(".notice")).to_contain_text("This link is not valid")
    await ui.page.goto(f"{ui.system.api_url}/ui/")
    await expect(ui.component).to_have_attribute("data-error", "missing_token")
    await expect(ui.component.locator(".notice")).to_contain_text("needs a link from the product")


async def test_token_expiring_while_the_page_is_open_says_so(ui: UI) -> None:
    conn = await ui.system.create()
    await ui.open(token=await ui.system.browser_token(ttl_s=4))
    await expect(ui.card(conn["id"])).to_be_visible()
    await expect(ui.component).to_have_attribute("data-error", "token_expired", timeout=20_000)
    await expect(ui.component.locator(".notice")).to_contain_text("This link has expired")
    assert len(ui.navigations) == 1


async def test_a_renewed_token_resumes_in_place(ui: UI) -> None:
    """The product renews the token by setting the attribute: the cards come back, no reload."""
    conn = await ui.system.create()
    await ui.open(token=await ui.system.browser_token(ttl_s=4))
    await expect(ui.card(conn["id"])).to_be_visible()
    await ui.mark_document()
    await ui.page.evaluate("""() => { window.authErrors = [];
        document.addEventListener('integration-status:auth-error', (e) => authErrors.push(e.detail.code)); }""")
    await expect(ui.component).to_have_attribute("data-error", "token_expired", timeout=20_000)
    await expect(ui.card(conn["id"])).to_be_hidden()  # nothing stale is shown as if it were live
    assert await ui.page.evaluate("window.authErrors") == ["token_expired"]  # the host is told, once

    assert await send_event(ui.system, conn) == 202  # changed while the page could not see it
    fresh = await ui.system.browser_token()
    await ui.component.evaluate("(el, token) => el.setAttribute('token', token)", fresh)
    await expect(ui.component).not_to_have_attribute("data-error", "token_expired")
    await expect(ui.component.locator(".notice")).to_be_hidden()
    await expect(ui.card(conn["id"])).to_have_attribute("data-state", "connected")
    await expect(ui.component).to_have_attribute("data-link", "live")
    assert await ui.same_document()
    assert len(ui.navigations) == 1


# --- the component on the product's own page ---------------------------------------------------

HOST_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Product</title>
<script type="module" src="/ui/integration-status.js"></script></head>
<body><h1>Your Stripe integration</h1>
<integration-status token="{token}" connection-id="{cid}"></integration-status>
<script>
  window.changes = [];
  document.addEventListener('integration-status:change', (e) => window.changes.push(e.detail.state));
</script></body></html>"""


async def test_the_component_drops_into_a_product_page(ui: UI) -> None:
    acct = account()
    shown, other = await ui.system.create(account_id=acct), await ui.system.create(account_id=acct)
    token = await ui.system.browser_token(acct)
    host_url = f"{ui.system.api_url}/product/integrations"  # same origin as the API, as behind a proxy
    await ui.page.route(host_url, lambda route: route.fulfill(
        content_type="text/html", body=HOST_PAGE.format(token=token, cid=shown["id"])))
    await ui.page.goto(host_url)
    component = ui.page.locator("integration-status")
    await expect(component).to_have_attribute("data-link", "live")
    await expect(ui.card(shown["id"])).to_have_attribute("data-state", "pending")
    await expect(ui.card(other["id"])).to_have_count(0)  # connection-id shows that one only

    assert await send_event(ui.system, shown) == 202
    await expect(ui.card(shown["id"])).to_have_attribute("data-state", "connected")
    assert "connected" in await ui.page.evaluate("window.changes")  # the host page heard it
    assert len(ui.navigations) == 1


async def test_the_page_catches_up_after_its_connection_drops(ui: UI) -> None:
    conn = await ui.system.create()
    await ui.open()
    await ui.wait_live()
    await ui.mark_document()
    await ui.page.context.set_offline(True)
    await expect(ui.component).to_have_attribute("data-link", "offline")
    await expect(ui.component.locator(".link")).to_contain_text("Offline")
    assert await send_event(ui.system, conn) == 202  # happens while the page cannot hear it
    await ui.system.wait_for(conn["id"], lambda v: v["state"] == "connected")
    await ui.page.context.set_offline(False)
    await expect(ui.card(conn["id"])).to_have_attribute("data-state", "connected")
    await expect(ui.component).to_have_attribute("data-link", "live")
    assert await ui.same_document()


async def test_deliveries_are_read_for_cards_on_screen_and_sparingly(ui: UI) -> None:
    acct = account()
    conns = [await ui.system.create(account_id=acct) for _ in range(6)]
    first, last = conns[0]["id"], conns[-1]["id"]
    reads: dict[str, int] = {}

    def count(request: Any) -> None:
        if request.url.split("?")[0].endswith("/deliveries"):
            cid = request.url.split("/v1/connections/")[1].split("/")[0]
            reads[cid] = reads.get(cid, 0) + 1

    ui.page.on("request", count)
    await ui.page.set_viewport_size({"width": 760, "height": 400})
    await ui.open(acct)
    await ui.wait_live()
    await expect(ui.card(first).locator(".deliveries")).to_contain_text("Nothing received yet.")
    assert reads.get(last, 0) == 0, reads  # far below the fold: not read

    events = 30  # a busy connection: every event is a change, but not a read each
    statuses = await asyncio.gather(*(send_event(ui.system, conns[0]) for _ in range(events)))
    assert set(statuses) == {202}
    await ui.system.wait_for(first, lambda v: v["events_received"] == events)
    await expect(ui.card(first).locator(".delivery[data-outcome=verified]")).to_have_count(5)
    await expect(ui.card(first).locator(".facts")).to_contain_text(str(events))
    assert reads[first] < events // 2, reads  # not one read per event

    await ui.card(last).scroll_into_view_if_needed()
    await expect(ui.card(last).locator(".deliveries")).to_contain_text("Nothing received yet.")
    assert reads[last] == 1


# --- what the page tells analytics ---------------------------------------------------------------

async def test_opening_the_page_publishes_status_viewed(ui: UI, amqp_url: str) -> None:
    """``integration_status_viewed`` is what people were shown, labelled connected / pending / error."""
    acct = account()
    ok, waiting, late = [await ui.system.create(account_id=acct, timeout_s=t) for t in (600, 600, 1)]
    assert await send_event(ui.system, ok) == 202
    await ui.system.wait_for(ok["id"], lambda v: v["state"] == "connected")
    await ui.system.wait_for(late["id"], lambda v: v["state"] == "failed")
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(ui.system.common["analytics_exchange"])
        queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="integration_status_viewed")
        await ui.open(acct)
        await ui.wait_live()
        shown: dict[str, str] = {}
        async with asyncio.timeout(15), queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                event = orjson.loads(message.body)
                shown[event["connection_id"]] = event["status"]
                if len(shown) == 3:
                    break
    assert shown == {ok["id"]: "connected", waiting["id"]: "pending", late["id"]: "error"}
