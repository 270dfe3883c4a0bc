"""The notifier's own HTTP server: health, readiness, and the metrics it sets, after real traffic."""

from __future__ import annotations

import asyncio
import time

import orjson

from tests.notifier.conftest import NOTIFIER, ProductReceiver, register
from tests.notifier.test_notifications import send_verified
from tests.system import System, free_port


async def scrape(system: System, url: str) -> str:
    async with system.session.get(url) as resp:
        assert resp.status == 200
        return await resp.text()


async def test_health_readiness_and_metrics(notified: System, product: ProductReceiver) -> None:
    await notified.stop_notifiers()
    port = free_port()
    notified.start_notifier(serve_http=True, notifier_port=port, notifier_gauges_interval_s=0.2, **NOTIFIER)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:  # the server starts once the consumers are up
        try:
            ready = await scrape(notified, f"{base}/readyz")
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
    assert orjson.loads(ready) == {"status": "ok", "checks": {"redis": True, "rabbitmq": True}}
    assert orjson.loads(await scrape(notified, f"{base}/healthz"))["status"] == "ok"

    endpoint = await register(notified, product.url("m"))
    conn = await notified.create()
    await send_verified(notified, conn)
    await product.wait_for(lambda: len(product.at("m")) == 1)

    wanted = ('hookstatus_notification_attempts_total{outcome="delivered"}',
              'hookstatus_notifications_relayed_total{type="connection.connected"}',
              "hookstatus_notification_deliveries_pending", "hookstatus_notification_endpoints_disabled")
    deadline = time.monotonic() + 30
    while True:
        text = await scrape(notified, f"{base}/metrics")
        if all(name in text for name in wanted):
            break
        assert time.monotonic() < deadline, text
        await asyncio.sleep(0.1)
    assert conn["id"] not in text and endpoint["id"] not in text and endpoint["secret"] not in text
