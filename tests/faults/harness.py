"""The services as real subprocesses (``python -m services.<name>``), on a test's own prefixes.

Each process gets its settings from environment variables, exactly as in production, and writes its
JSON log lines to a file the test can read afterwards (the secrets test greps them).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from shared.runner import die_with_parent_killed
from tests.system import free_port

ROOT = Path(__file__).resolve().parents[2]
PORT_VARS = {"receiver": "RECEIVER_PORT", "verifier": "VERIFIER_PORT", "status_api": "STATUS_API_PORT",
             "notifier": "NOTIFIER_PORT"}
TOKEN = "fault-test-service-token"


def service_env(prefix: str, amqp_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment every service of one test shares (their own ports are added per process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQP_", "REDIS_", "STATUS_API_"))}
    env.update(
        AMQP_URL=amqp_url,
        REDIS_URL=redis_url,
        REDIS_PREFIX=prefix,
        AMQP_PREFIX=prefix,
        ANALYTICS_EXCHANGE=f"{prefix}.analytics",
        STATUS_API_TOKEN=TOKEN,
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class ServiceProcess:
    name: str
    env: dict[str, str]
    log_path: Path
    port: int = 0
    admin_port: int = 0  # the receiver's admin listener (/metrics, the detailed /readyz)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    exit_codes: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        """Where /metrics and the detailed /readyz are: the receiver's admin listener, else its own port."""
        return f"http://127.0.0.1:{self.admin_port}" if self.admin_port else self.url

    async def start(self, timeout_s: float = 20) -> None:
        """Start the process and wait until its /healthz answers."""
        if not self.port:
            self.port = free_port()
        env = {**self.env, PORT_VARS[self.name]: str(self.port)}
        if self.name == "receiver":
            self.admin_port = self.admin_port or free_port()
            env["RECEIVER_ADMIN_PORT"] = str(self.admin_port)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"], cwd=ROOT, env=env,
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent_killed,
            )
        self.starts += 1
        await self._wait_healthy(timeout_s)

    async def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
                try:
                    async with session.get(self.url + "/healthz", timeout=aiohttp.ClientTimeout(total=1)) as r:
                        if r.status == 200:
                            return
                except (TimeoutError, aiohttp.ClientError):
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} did not become healthy in {timeout_s}s:\n{self.logs()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no chance to ack, return or close anything."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.exit_codes.append(self.proc.wait(10))
        self.proc = None

    async def terminate(self, timeout_s: float = 15) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took to exit)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        while self.proc.poll() is None and time.monotonic() - started < timeout_s:
            await asyncio.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"{self.name} did not exit within {timeout_s}s of SIGTERM")
        code = int(self.proc.returncode)
        self.exit_codes.append(code)
        self.proc = None
        return code, time.monotonic() - started

    def stop_now(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Services:
    """Starts and always stops the processes of one test."""

    env: dict[str, str]
    log_dir: Path
    procs: list[ServiceProcess] = field(default_factory=list)

    def make(self, name: str, **env: str) -> ServiceProcess:
        proc = ServiceProcess(name, {**self.env, **env}, self.log_dir / f"{name}-{len(self.procs)}.log")
        self.procs.append(proc)
        return proc

    async def start(self, name: str, **env: str) -> ServiceProcess:
        proc = self.make(name, **env)
        await proc.start()
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop_now()

    def all_logs(self) -> str:
        return "\n".join(p.logs() for p in self.procs)
