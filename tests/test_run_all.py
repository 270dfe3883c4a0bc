"""`make run`'s launcher, as a new user meets it: it says which server is missing, and it starts and
stops the four services cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.notifier.conftest import notifier_cleanup  # noqa: F401 (a fixture)
from tests.system import free_port

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = [sys.executable, str(ROOT / "scripts" / "run_all.py")]


def test_unreachable_servers_are_named_with_how_to_start_them() -> None:
    closed = free_port()
    env = {**os.environ, "AMQP_URL": f"amqp://guest:guest@127.0.0.1:{closed}/",
           "REDIS_URL": f"redis://127.0.0.1:{closed}/0"}
    result = subprocess.run(LAUNCHER, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"RabbitMQ is not reachable at 127.0.0.1:{closed}" in result.stdout
    assert f"Redis is not reachable at 127.0.0.1:{closed}" in result.stdout
    assert "rabbitmq-server" in result.stdout and "redis-server" in result.stdout


@pytest.mark.usefixtures("notifier_cleanup")
def test_starts_all_four_and_stops_them_on_sigterm(prefix: str, redis_client: object, amqp_cleanup: None) -> None:
    ports = {"RECEIVER_PORT": free_port(), "RECEIVER_ADMIN_PORT": free_port(), "STATUS_API_PORT": free_port(),
             "VERIFIER_PORT": free_port(), "NOTIFIER_PORT": free_port()}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()},
           "REDIS_PREFIX": prefix, "AMQP_PREFIX": prefix, "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(LAUNCHER, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "service token" in line or not line:
                break
        output = "".join(lines)
        assert "service token" in output, output
        assert "loopback URLs allowed for local development" in output, output
        assert "encrypted with the development key" in output, output
        for port in ports.values():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
                assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert "stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
