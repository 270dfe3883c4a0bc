"""The system under test: our three services as separate processes on free ports and a fresh prefix,
the connections made in it, and what can be read back from it (counters, versions, Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import aio_pika
import aiohttp
import redis.asyncio as aioredis
from standardwebhooks import Webhook

from bench.loadgen import sign
from bench.plan import PER_ACCOUNT, PY, TOKEN, Plan, free_port
from bench.processes import Processes, children, wait_http
from bench.sweep import delete_prefix
from shared.broker import ROUTING_KEY, Topology
from shared.keys import Keys
from shared.models import DeliveryMessage, new_id, now_ms


@dataclass
class Conn:
    id: str
    secret: str
    url: str


class System:
    def __init__(self, plan: Plan, tmp: str) -> None:
        self.plan = plan
        self.tmp = tmp  # the services' logs, and the specs handed to helper processes
        self.token = TOKEN
        self.procs = Processes(tmp)
        self.keys = Keys(plan.prefix)
        self.ports = {name: free_port() for name in ("receiver", "status_api", "verifier")}
        self.api = f"http://127.0.0.1:{self.ports['status_api']}"
        self.receiver = f"http://127.0.0.1:{self.ports['receiver']}"
        self.conns: list[Conn] = []
        self.redis = aioredis.Redis.from_url(plan.redis_url, decode_responses=True)

    def service_env(self) -> dict[str, str]:
        p = self.plan.prefix
        return {
            "AMQP_URL": self.plan.amqp_url,
            "REDIS_URL": self.plan.redis_url,
            "REDIS_PREFIX": p,
            "AMQP_PREFIX": p,
            "ANALYTICS_EXCHANGE": f"{p}.analytics",
            "RECEIVER_PORT": str(self.ports["receiver"]),
            "RECEIVER_ADMIN_PORT": str(free_port()),
            "STATUS_API_PORT": str(self.ports["status_api"]),
            "VERIFIER_PORT": str(self.ports["verifier"]),
            "STATUS_API_TOKEN": TOKEN,
            "PUBLIC_BASE_URL": self.receiver,
            "RECEIVER_WORKERS": str(self.plan.receiver_workers),
        }

    def start_service(self, name: str) -> None:
        self.procs.start(name, [PY, "-m", f"services.{name}"], self.service_env())

    async def start_system(self) -> None:
        for name in ("receiver", "status_api", "verifier"):
            self.start_service(name)
        for name in ("receiver", "status_api", "verifier"):
            await wait_http(f"http://127.0.0.1:{self.ports[name]}/readyz")

    async def create_connections(self, n: int, account: str | None = None) -> list[Conn]:
        """``n`` connections, in ``account`` or ``PER_ACCOUNT`` to an account (``acct-bench-<i>``)."""
        headers = {"Authorization": f"Bearer {TOKEN}"}
        accounts = iter(range(n))
        out: list[Conn] = []
        sem = asyncio.Semaphore(16)
        async with aiohttp.ClientSession(headers=headers) as session:

            async def one() -> None:
                acct = account or f"acct-bench-{next(accounts) // PER_ACCOUNT}"
                body = {"account_id": acct, "provider": "standard-webhooks", "timeout_s": 3600}
                async with sem, session.post(f"{self.api}/v1/connections", json=body) as resp:
                    data = await resp.json()
                    if resp.status != 201:
                        raise RuntimeError(f"could not create a connection: {resp.status} {data}")
                    out.append(Conn(data["id"], data["secret"], data["webhook_url"]))

            await asyncio.gather(*(one() for _ in range(n)))
        return out

    async def verifier_applied(self, session: aiohttp.ClientSession) -> int:
        """Deliveries the verifier has stored since it started (its own Prometheus counter)."""
        async with session.get(f"http://127.0.0.1:{self.ports['verifier']}/metrics") as resp:
            text = await resp.text()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("hookstatus_deliveries_consumed_total{") and 'result="applied"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    async def events_stored(self, conns: Sequence[Conn]) -> int:
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in conns:
                pipe.hget(self.keys.conn(c.id), "events_received")
            return sum(int(v or 0) for v in await pipe.execute())

    async def versions(self, conns: Sequence[Conn]) -> list[int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in conns:
                pipe.hget(self.keys.conn(c.id), "version")
            return [int(v or 0) for v in await pipe.execute()]

    async def sse_available(self) -> bool:
        url = f"{self.api}/v1/accounts/acct-bench-0/stream"
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                async with session.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                    return resp.status == 200 and resp.content_type == "text/event-stream"
            except (aiohttp.ClientError, TimeoutError):
                return False

    async def send_one(self, conn: Conn) -> None:
        """One signed webhook to ``conn``, which must be accepted."""
        req = sign({"url": conn.url}, 0, Webhook(conn.secret))
        async with aiohttp.ClientSession() as session, session.post(req.url, data=req.body,
                                                                    headers=req.headers) as resp:
            if resp.status != 202:
                raise RuntimeError(f"a webhook was refused: {resp.status} {await resp.text()}")

    async def queue_deliveries(self, n: int) -> None:
        topology = Topology(self.plan.prefix, f"{self.plan.prefix}.analytics")
        connection = await aio_pika.connect(self.plan.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(topology.exchange)
            todo = iter(range(n))

            async def worker() -> None:
                for i in todo:
                    c = self.conns[i % len(self.conns)]
                    msg = DeliveryMessage(new_id(), c.id, "standard-webhooks", now_ms(), "verified",
                                          event_id=f"msg_{uuid.uuid4().hex}", event_type="invoice.paid")
                    await exchange.publish(aio_pika.Message(
                        msg.to_bytes(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        content_type="application/json", message_id=msg.delivery_id), ROUTING_KEY)

            await asyncio.gather(*(worker() for _ in range(64)))

    async def purge_queue(self, queue: str) -> None:
        connection = await aio_pika.connect(self.plan.amqp_url)
        async with connection:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await (await channel.get_queue(queue)).purge()

    def cpu_groups(self) -> dict[str, list[int]]:
        """The processes whose CPU time the whole-path row accounts for (the servers by their name)."""
        receiver = self.procs.pid("receiver")
        groups = {"receiver": [receiver, *children(receiver)], "verifier": [self.procs.pid("verifier")],
                  "status API": [self.procs.pid("status_api")], "RabbitMQ": [], "Redis": []}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError), open(f"/proc/{entry}/comm") as fh:
                    comm = fh.read().strip()
                if comm == "beam.smp":
                    groups["RabbitMQ"].append(int(entry))
                elif comm == "redis-server":
                    groups["Redis"].append(int(entry))
        return groups

    async def cleanup(self) -> None:
        self.procs.stop_all()
        await delete_prefix(self.redis, f"{self.plan.prefix}:")
        connection = await aio_pika.connect(self.plan.amqp_url)
        async with connection:
            p = self.plan.prefix
            for queue in (f"{p}.deliveries", f"{p}.deliveries.dead", f"{p}.limit", f"{p}.limit.receiver"):
                channel = await connection.channel()
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.queue_delete(queue)
            for exchange in (f"{p}.deliveries", f"{p}.dead", f"{p}.analytics"):
                channel = await connection.channel()
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.exchange_delete(exchange)
        await self.redis.aclose()
