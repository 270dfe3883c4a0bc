"""The notifier while Redis is away: a retry that comes due then is held (not requeued towards the
delivery limit, not dead-lettered) and delivered once Redis is back. The notifier while RabbitMQ is away:
its consumers' watchdog rebuilds their connection."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import pytest

from shared.watchdog import PROBE_TIMEOUT_S, STALL_S
from tests.faults.harness import ServiceProcess, service_env
from tests.faults.proxy import FaultProxy
from tests.notifier.conftest import NOTIFIER, ProductReceiver, attempts, register
from tests.notifier.test_notifications import send_verified, verified, wait_attempts
from tests.system import System


async def test_a_retry_due_while_redis_is_away_is_held_then_delivered(
    notified: System, product: ProductReceiver, redis_url: str, amqp_url: str, prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="services.notifier.app")
    parts = urlsplit(redis_url)
    async with FaultProxy(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy:
        await notified.stop_notifiers()
        notified.start_notifier(**{**NOTIFIER, "notifier_retry_delays_s": "1", "redis_url": proxy.url(redis_url)})
        product.answers["held"].append(500)
        endpoint = await register(notified, product.url("held"))
        conn = await notified.create()
        await send_verified(notified, conn)
        [first] = await wait_attempts(notified, endpoint["id"], 1)
        assert first["outcome"] == "failed"

        proxy.cut()  # the notifier's Redis only: the status API still reads the log
        # The retry comes due (after 1 s), finds Redis away and is held: wait for that, not a fixed time.
        async with asyncio.timeout(40):
            while not any(r.getMessage() == "notification held: a server is away" for r in caplog.records):
                await asyncio.sleep(0.05)
        assert len(await attempts(notified, endpoint["id"])) == 1
        assert len(product.at("held")) == 1
        proxy.restore()

        log = await wait_attempts(notified, endpoint["id"], 2)
        assert [(a["attempt"], a["outcome"]) for a in reversed(log)] == [(1, "failed"), (2, "delivered")]
        assert verified(endpoint["secret"], product.at("held")[-1])["data"]["id"] == conn["id"]

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        dead = await channel.declare_queue(f"{prefix}.notify.dead", passive=True)
        assert dead.declaration_result.message_count == 0


async def test_consumers_whose_broker_hangs_get_a_fresh_connection(
    notified: System, product: ProductReceiver, amqp_url: str, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    """The broker hangs (connections open, nothing answered) for longer than the watchdog allows: the
    notifier drops its consuming connection, builds fresh ones until the broker answers, and notifies
    again, with no restart. The notifier runs as its own process here, as in production: its connect
    attempts to the hung broker are cancelled at their deadline, and aiormq leaves such an attempt's
    socket open (one per attempt while the broker hangs; they close when the broker's side does)."""
    await notified.stop_notifiers()
    parts = urlsplit(amqp_url)
    async with FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5672) as proxy:
        env = service_env(prefix, proxy.url(amqp_url), redis_url, NOTIFIER_ALLOW_LOOPBACK="true",
                          NOTIFIER_RELAY_INTERVAL_S="0.05")
        notifier = ServiceProcess("notifier", env, tmp_path / "notifier.log")
        await notifier.start()
        try:
            await register(notified, product.url("watched"))
            before = await notified.create()
            await send_verified(notified, before)
            await product.wait_event("watched", "connection.connected", before["id"])

            proxy.blackhole()
            # The probe gets no answer (5 s), then 10 s of that is a stall: the connection is dropped.
            # Waited for (not a fixed sleep): on a loaded box the drop may come later than 25 s, and a
            # broker restored before it answers the probe again, so no drop would ever be seen.
            async with asyncio.timeout(STALL_S * 2 + PROBE_TIMEOUT_S + 60):
                while "dropping the broker connection; a fresh one is built" not in notifier.logs():
                    await asyncio.sleep(0.2)
            proxy.restore()
            after = await notified.create()
            await send_verified(notified, after)
            await product.wait_event("watched", "connection.connected", after["id"])
            logs = notifier.logs()
            assert "dropping the broker connection; a fresh one is built" in logs
            assert "consuming again on a fresh connection" in logs
            code, _ = await notifier.terminate()
            assert code == 0, notifier.logs()[-3000:]
        finally:
            if notifier.proc is not None:
                notifier.kill()
