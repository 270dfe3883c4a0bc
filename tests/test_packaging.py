"""The wheel is complete: built from the checkout, installed into a fresh virtual environment outside it,
its services run against the real RabbitMQ and Redis and serve everything they ship (the Lua scripts
they load at start-up, the UI, openapi.json), with nothing imported from the checkout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import aiohttp
import pytest
import redis.asyncio as aioredis

from services.notifier.config import Settings as NotifierSettings
from services.notifier.topology import NotifyTopology
from shared.keys import Keys
from shared.runner import die_with_parent_killed
from tests.system import free_port

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "shared", "services", "hookstatus_client")
PORT_VARS = {"receiver": "RECEIVER_PORT", "status_api": "STATUS_API_PORT", "verifier": "VERIFIER_PORT",
             "notifier": "NOTIFIER_PORT"}
TOKEN = "packaging-test-service-token"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _run(*argv: str | Path, cwd: Path) -> None:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def build_wheel(tmp_path: Path) -> Path:
    """A wheel built from a copy of the sources (the build writes nothing into the checkout)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(ROOT / name, src / name)
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dist, ".", cwd=src)
    [wheel] = dist.glob("hookstatus-*.whl")
    return wheel


def install(wheel: Path, tmp_path: Path) -> Path:
    """A new virtual environment with the wheel and its runtime dependencies (pip's cache keeps it quick)."""
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", wheel, cwd=tmp_path)
    return python


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built and installed once for this module's tests."""
    where = tmp_path_factory.mktemp("wheel")
    return install(build_wheel(where), where)


async def _delete_notifier_topology(amqp_url: str, prefix: str) -> None:
    topology = NotifyTopology(prefix, NotifierSettings().retry_delays_ms)
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        for queue in topology.queues:
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await (await connection.channel()).queue_delete(queue)
        for exchange in (topology.transitions, topology.jobs_exchange, topology.dead):
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await (await connection.channel()).exchange_delete(exchange)


@pytest.fixture
async def notifier_topology_cleanup(amqp_url: str, prefix: str) -> AsyncIterator[None]:
    yield
    await _delete_notifier_topology(amqp_url, prefix)


@pytest.fixture
def running(installed: Path, tmp_path: Path, amqp_url: str, redis_url: str, prefix: str,
            redis_client: aioredis.Redis, amqp_cleanup: None, notifier_topology_cleanup: None
            ) -> Iterator[dict[str, int]]:
    """Every service from the installed wheel, cwd outside the checkout, on free ports."""
    ports = {name: free_port() for name in PORT_VARS}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQP_", "REDIS_", "STATUS_API_", "PYTHON"))}
    env.update(AMQP_URL=amqp_url, REDIS_URL=redis_url, REDIS_PREFIX=prefix, AMQP_PREFIX=prefix,
               ANALYTICS_EXCHANGE=f"{prefix}.analytics", STATUS_API_TOKEN=TOKEN, PYTHONSAFEPATH="1",
               PUBLIC_BASE_URL=f"http://127.0.0.1:{ports['receiver']}",
               RECEIVER_ADMIN_PORT=str(free_port()), **{PORT_VARS[name]: str(port) for name, port in ports.items()})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name in PORT_VARS:
            with (run_dir / f"{name}.log").open("wb") as log:
                procs.append(subprocess.Popen([str(installed), "-m", f"services.{name}"], cwd=run_dir, env=env,
                                              stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent_killed))
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


async def _get(session: aiohttp.ClientSession, url: str, limit_s: float = 60) -> tuple[int, str, bytes]:
    """The first answer from ``url`` once something listens there."""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            async with session.get(url) as resp:
                return resp.status, resp.content_type, await resp.read()
        except aiohttp.ClientConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def data_files() -> set[str]:
    """Every file of the packages that is not Python source: what package-data must list."""
    found = set()
    for package in SOURCES[1:]:
        for path in (ROOT / package).rglob("*"):
            if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts:
                found.add(str(path.relative_to(ROOT)))
    return found


def test_the_wheel_ships_every_file_the_services_read(installed: Path, tmp_path: Path) -> None:
    code = "import pathlib, shared; print(pathlib.Path(shared.__file__).parent.parent)"
    done = subprocess.run([str(installed), "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                          env={"PATH": os.environ["PATH"]})
    site = Path(done.stdout.strip())
    assert site.is_relative_to(installed.parent.parent), "imported from outside the new environment"
    expected = data_files()
    assert {"shared/providers/catalog.toml", "services/status_api/ui/index.html"} <= expected
    missing = sorted(name for name in expected if not (site / name).is_file())
    assert not missing, f"package-data does not ship: {missing}"


async def test_the_installed_services_run_and_serve_the_ui(running: dict[str, int], redis_client: aioredis.Redis,
                                                           prefix: str) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for name, port in running.items():
            status, _, _ = await _get(session, f"http://127.0.0.1:{port}/healthz")
            assert status == 200, name
        api = f"http://127.0.0.1:{running['status_api']}"
        status, content_type, body = await _get(session, f"{api}/ui/")
        assert (status, content_type) == (200, "text/html")
        assert b"<html" in body.lower()
        status, content_type, body = await _get(session, f"{api}/ui/page.js")
        assert (status, content_type) == (200, "text/javascript") and body
        status, content_type, _ = await _get(session, f"{api}/openapi.json")
        assert (status, content_type) == (200, "application/json")
        # A connection made through the installed status API runs the shipped Lua scripts in Redis.
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with session.post(f"{api}/v1/connections", headers=headers,
                                json={"account_id": "acct-wheel", "provider": "standard-webhooks"}) as resp:
            assert resp.status == 201, await resp.text()
            created = await resp.json()
    assert created["state"] == "pending"
    assert await redis_client.hget(Keys(prefix).conn(created["id"]), "state") == "pending"
