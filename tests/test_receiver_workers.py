"""RECEIVER_WORKERS: several receiver processes share one port, and SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

from tests.system import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [int(p) for p in fh.read().split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_workers_serve_one_port_and_stop_together(
    amqp_url: str, redis_url: str, prefix: str, amqp_cleanup: None
) -> None:
    port = free_port()
    env = {**os.environ, "AMQP_URL": amqp_url, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix,
           "AMQP_PREFIX": prefix, "ANALYTICS_EXCHANGE": f"{prefix}.analytics", "RECEIVER_PORT": str(port),
           "RECEIVER_ADMIN_PORT": str(free_port()), "RECEIVER_WORKERS": "2", "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "services.receiver"], cwd=ROOT, env=env)
    try:
        ready = 0
        for _ in range(200):  # wait for both workers to start (generous: the box may be busy)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                    ready += resp.status == 200
            except OSError:
                pass
            if ready >= 5 and len(_children(proc.pid)) == 2:
                break
            time.sleep(0.1)
        workers = _children(proc.pid)
        assert len(workers) == 2
        assert ready >= 5
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not any(_alive(w) for w in workers)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
