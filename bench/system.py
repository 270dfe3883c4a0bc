"""The system under test: our three services as separate processes on free ports and a fresh prefix,
the connections made in it, and what can be read back from it (counters, versions, Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

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


def listening_pids(port: int) -> list[int]:
    """The processes holding a socket that listens on ``port`` (from /proc; those of other users unseen)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            for line in fh.readlines()[1:]:
                cells = line.split()
                if cells[3] == "0A" and int(cells[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{cells[9]}]")
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if any(os.readlink(f"/proc/{entry}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{entry}/fd")):
                    pids.append(int(entry))
    return pids


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
        self.verifier_ports = [self.ports["verifier"]]  # every verifier running, for the stored count
        self.receiver_bases = [self.receiver]
        self._amqp: aio_pika.abc.AbstractConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._servers: dict[str, list[int]] | None = None

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

    def start_service(self, name: str, module: str = "", **env: str) -> None:
        """Start ``services.<module or name>`` as process ``name``, with ``env`` over the usual settings."""
        self.procs.start(name, [PY, "-m", f"services.{module or name}"], {**self.service_env(), **env})

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
        """Deliveries the running verifiers have stored since they started (their Prometheus counters)."""
        total = 0.0
        for port in self.verifier_ports:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                text = await resp.text()
            for line in text.splitlines():
                if line.startswith("hookstatus_deliveries_consumed_total{") and 'result="applied"' in line:
                    total += float(line.rsplit(" ", 1)[1])
        return int(total)

    async def queue_depth(self, queue: str = "") -> int:
        """Messages ready in a queue (ours by default): the backlog between the receivers and the verifiers."""
        if self._channel is None or self._channel.is_closed:
            self._amqp = await aio_pika.connect(self.plan.amqp_url)
            self._channel = await self._amqp.channel()
        declared = await self._channel.declare_queue(queue or f"{self.plan.prefix}.deliveries", passive=True)
        result = declared.declaration_result
        return int(result.message_count or 0) if result is not None else 0

    async def events_stored(self, conns: Sequence[Conn]) -> int:
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in conns:
                pipe.hget(self.keys.conn(c.id), "events_received")
            return sum(int(v or 0) for v in await pipe.execute())

    async def versions(self, ids: Sequence[str]) -> list[int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid in ids:
                pipe.hget(self.keys.conn(cid), "version")
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

    def tree(self, *names: str) -> list[int]:
        """The pids of the named processes and of their children (a service's workers)."""
        return [p for n in names if n in self.procs.running for p in (self.procs.pid(n), *children(self.procs.pid(n)))]

    def cpu_groups(self, receivers: tuple[str, ...] = ("receiver",), verifiers: tuple[str, ...] = ("verifier",),
                   ) -> dict[str, list[int]]:
        """The processes whose CPU time a row accounts for (RabbitMQ and Redis by their process name)."""
        groups = {"receiver": self.tree(*receivers), "verifier": self.tree(*verifiers),
                  "status API": self.tree("status_api"), **self.server_groups()}
        return groups

    def server_groups(self) -> dict[str, list[int]]:
        """RabbitMQ and Redis: the processes listening on the ports of ``AMQP_URL`` and ``REDIS_URL``
        (not the other brokers and Redis servers that may run on the box), found once."""
        if self._servers is None:
            amqp, red = urlsplit(self.plan.amqp_url).port or 5672, urlsplit(self.plan.redis_url).port or 6379
            self._servers = {"RabbitMQ": listening_pids(amqp), "Redis": listening_pids(red)}
        return self._servers

    async def cleanup(self) -> None:
        self.procs.stop_all()
        if self._amqp is not None:
            with contextlib.suppress(Exception):
                await self._amqp.close()
        await delete_prefix(self.redis, f"{self.plan.prefix}:")
        connection = await aio_pika.connect(self.plan.amqp_url)
        async with connection:
            p = self.plan.prefix
            for queue in (f"{p}.deliveries", f"{p}.deliveries.dead", f"{p}.limit", f"{p}.limit.receiver",
                          f"{p}.limit.pipeline"):
                channel = await connection.channel()
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.queue_delete(queue)
            for exchange in (f"{p}.deliveries", f"{p}.dead", f"{p}.analytics"):
                channel = await connection.channel()
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.exchange_delete(exchange)
        await self.redis.aclose()
