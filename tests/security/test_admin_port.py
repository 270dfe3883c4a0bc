"""Internal endpoints are off the provider-facing port: it serves ``/hooks/…``, ``/healthz`` and a bare
``/readyz`` (200 "ready" / 503 "not ready", no dependency detail); ``/metrics`` and the detailed
``/readyz`` are on the receiver's admin listener (``RECEIVER_ADMIN_PORT``, bound to 127.0.0.1 unless
told otherwise)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from services.receiver.app import ready_bare
from services.receiver.config import Settings
from shared import http
from tests.system import System, free_port

ROOT = Path(__file__).resolve().parents[2]


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with session.get(url) as resp:
        return resp.status, await resp.text(), resp.headers.get("Content-Type", "")


async def test_the_public_port_serves_no_metrics_and_a_bare_readyz(system: System) -> None:
    status, body, _ = await get(system.session, f"{system.receiver_url}/metrics")
    assert status == 404, body
    assert "hookstatus_" not in body
    status, body, content_type = await get(system.session, f"{system.receiver_url}/readyz")
    assert (status, body) == (200, "ready")
    assert content_type.startswith("text/plain")
    assert (await get(system.session, f"{system.receiver_url}/healthz"))[0] == 200


async def test_the_admin_listener_serves_metrics_and_the_detailed_readyz(system: System) -> None:
    status, body, _ = await get(system.session, f"{system.receiver_admin_url}/metrics")
    assert status == 200 and "hookstatus_" in body
    status, body, _ = await get(system.session, f"{system.receiver_admin_url}/readyz")
    assert status == 200
    assert '"redis":true' in body.replace(" ", "") and '"rabbitmq":true' in body.replace(" ", "")
    # The admin app has no webhook route.
    assert (await get(system.session, f"{system.receiver_admin_url}/hooks/{'a' * 32}"))[0] == 404


async def test_a_bare_readyz_says_not_ready_and_nothing_else(aiohttp_client: object) -> None:
    app = web.Application()
    app[http.SERVICE_NAME] = "receiver"

    async def down() -> dict[str, bool]:
        return {"redis": False, "rabbitmq": True}

    app[http.READY_CHECK] = down
    app.router.add_get("/readyz", ready_bare)
    client = await aiohttp_client(app)  # type: ignore[operator]
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert await resp.text() == "not ready"


def test_the_admin_listener_defaults_to_loopback_on_8083(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RECEIVER_ADMIN_HOST", "RECEIVER_ADMIN_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    assert (settings.receiver_admin_host, settings.receiver_admin_port) == ("127.0.0.1", 8083)


def _status(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_the_receiver_process_serves_both_listeners(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None
) -> None:
    public, admin = free_port(), free_port()
    env = {**os.environ, "AMQP_URL": amqp_url, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix,
           "AMQP_PREFIX": prefix, "ANALYTICS_EXCHANGE": f"{prefix}.analytics", "RECEIVER_PORT": str(public),
           "RECEIVER_ADMIN_PORT": str(admin), "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "services.receiver"], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if _status(f"http://127.0.0.1:{public}/readyz") == (200, "ready"):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "the receiver did not start"
            await asyncio.sleep(0.1)
        assert _status(f"http://127.0.0.1:{public}/metrics")[0] == 404
        status, text = _status(f"http://127.0.0.1:{admin}/metrics")
        assert status == 200 and "hookstatus_" in text
        status, text = _status(f"http://127.0.0.1:{admin}/readyz")
        assert status == 200 and "rabbitmq" in text
    finally:
        proc.terminate()
        proc.wait(15)
