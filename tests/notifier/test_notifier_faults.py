"""The notifier while Redis is away: a retry that comes due then is held (not requeued towards the
delivery limit, not dead-lettered) and delivered once Redis is back."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import aio_pika

from tests.faults.proxy import FaultProxy
from tests.notifier.conftest import NOTIFIER, ProductReceiver, attempts, register
from tests.notifier.test_notifications import send_verified, verified, wait_attempts
from tests.system import System


async def test_a_retry_due_while_redis_is_away_is_held_then_delivered(
    notified: System, product: ProductReceiver, redis_url: str, amqp_url: str, prefix: str
) -> None:
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
        await asyncio.sleep(3)  # the retry comes due (after 1 s) and finds Redis away
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
