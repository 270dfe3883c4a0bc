"""The whole system in one test process: receiver and status API on real loopback sockets, the
verifier consuming from the real broker, all on a test's own prefixes. And a small client for it."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from services.notifier.app import run as run_notifier
from services.notifier.config import Settings as NotifierSettings
from services.receiver.app import create_admin_app as create_receiver_admin
from services.receiver.app import create_app as create_receiver
from services.receiver.config import Settings as ReceiverSettings
from services.status_api.app import create_app as create_status_api
from services.status_api.config import Settings as StatusSettings
from services.verifier.app import run as run_verifier
from services.verifier.config import Settings as VerifierSettings

TOKEN = "test-service-token"


def _ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections (Linux; elsewhere the IANA default)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free port for a test's listener, below the kernel's range for outgoing connections. A port the
    kernel hands out for ``bind(0)`` is from that range, so an outgoing connection (a client's socket
    to RabbitMQ, say) can take it before the listener binds it: "address already in use". Never the
    same port twice in one test run."""
    low = _ephemeral_low()
    if low <= 11_000:  # no room below the range: the kernel's pick, as before
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    for _ in range(1000):
        port = random.randint(10_000, low - 1)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


@dataclass
class System:
    receiver_url: str
    api_url: str
    session: aiohttp.ClientSession
    common: dict[str, Any]
    verifiers: list[tuple[asyncio.Event, asyncio.Task[None]]] = field(default_factory=list)
    notifiers: list[tuple[asyncio.Event, asyncio.Task[None]]] = field(default_factory=list)
    receiver_admin_url: str = ""  # the receiver's admin listener: /metrics, the detailed /readyz

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    async def api(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        headers = {**self.auth, **kw.pop("headers", {})}
        async with self.session.request(method, self.api_url + path, headers=headers, **kw) as resp:
            return resp.status, await resp.json(content_type=None)

    async def create(self, provider: str = "standard-webhooks", **fields: Any) -> dict[str, Any]:
        body = {"account_id": fields.pop("account_id", "acct-test"), "provider": provider, **fields}
        status, data = await self.api("POST", "/v1/connections", json=body)
        assert status == 201, data
        return data  # type: ignore[no-any-return]

    async def browser_token(self, account_id: str = "acct-test", ttl_s: int | None = None) -> str:
        """A short-lived token scoped to one account, as the product backend would mint for the page."""
        body = {} if ttl_s is None else {"ttl_s": ttl_s}
        status, data = await self.api("POST", f"/v1/accounts/{account_id}/tokens", json=body)
        assert status == 201, data
        return str(data["token"])

    async def get(self, cid: str) -> dict[str, Any]:
        status, data = await self.api("GET", f"/v1/connections/{cid}")
        assert status == 200, data
        return data  # type: ignore[no-any-return]

    async def post_hook(
        self, url: str, body: Any, headers: dict[str, str], method: str = "POST"
    ) -> tuple[int, Any]:
        async with self.session.request(method, url, data=body, headers=headers) as resp:
            text = await resp.read()
            try:
                import orjson

                return resp.status, orjson.loads(text)
            except ValueError:
                return resp.status, text

    async def wait_for(
        self, cid: str, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 10
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            view = await self.get(cid)
            if predicate(view):
                return view
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met in {timeout_s}s; last status: {view}")
            await asyncio.sleep(0.05)

    def verifier_settings(self, **overrides: Any) -> VerifierSettings:
        values = {"sweep_interval_s": 0.2, **self.common, **overrides}
        return VerifierSettings.from_env(**values)

    def start_verifier(self, **overrides: Any) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run_verifier(self.verifier_settings(**overrides), stop, serve_http=False))
        self.verifiers.append((stop, task))

    def start_notifier(self, serve_http: bool = False, **overrides: Any) -> None:
        """The notifier, in this process (not started by default)."""
        settings = NotifierSettings.from_env(**{"notifier_relay_interval_s": 0.05, **self.common, **overrides})
        stop = asyncio.Event()
        self.notifiers.append((stop, asyncio.create_task(run_notifier(settings, stop, serve_http=serve_http))))

    async def stop_notifiers(self) -> None:
        for stop, _ in self.notifiers:
            stop.set()
        for _, task in self.notifiers:
            await asyncio.wait_for(task, 15)
        self.notifiers.clear()

    async def stop_verifiers(self) -> None:
        for stop, _ in self.verifiers:
            stop.set()
        for _, task in self.verifiers:
            await asyncio.wait_for(task, 15)
        self.verifiers.clear()


@asynccontextmanager
async def start_system(
    amqp_url: str,
    redis_url: str,
    prefix: str,
    *,
    verifiers: int = 1,
    status_api: dict[str, Any] | None = None,
    receiver: dict[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[System]:
    """``overrides`` go to every service's settings, ``status_api`` (``receiver``) to that service's only."""
    r_port = free_port()
    common: dict[str, Any] = {
        "amqp_url": amqp_url,
        "redis_url": redis_url,
        "redis_prefix": prefix,
        "amqp_prefix": prefix,
        "analytics_exchange": f"{prefix}.analytics",
        "public_base_url": f"http://127.0.0.1:{r_port}",
        **overrides,
    }
    receiver_app = create_receiver(ReceiverSettings.from_env(**common, **(receiver or {})))
    receiver = web.AppRunner(receiver_app)
    receiver_admin = web.AppRunner(create_receiver_admin(receiver_app))
    api = web.AppRunner(create_status_api(
        StatusSettings.from_env(status_api_token=(TOKEN,), **common, **(status_api or {}))
    ))
    await receiver.setup()
    await receiver_admin.setup()
    await api.setup()
    s_port, a_port = free_port(), free_port()
    await web.TCPSite(receiver, "127.0.0.1", r_port).start()
    await web.TCPSite(receiver_admin, "127.0.0.1", a_port).start()
    await web.TCPSite(api, "127.0.0.1", s_port).start()
    async with aiohttp.ClientSession() as session:
        system = System(f"http://127.0.0.1:{r_port}", f"http://127.0.0.1:{s_port}", session, common,
                        receiver_admin_url=f"http://127.0.0.1:{a_port}")
        for _ in range(verifiers):
            system.start_verifier()
        try:
            yield system
        finally:
            await system.stop_notifiers()
            await system.stop_verifiers()
            await api.cleanup()
            await receiver_admin.cleanup()
            await receiver.cleanup()


# What the ``system_with`` fixture gives: start_system with the test's broker, Redis and prefix bound.
SystemWith = Callable[..., AbstractAsyncContextManager[System]]
