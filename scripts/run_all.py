"""`make run`: start the receiver, the verifier, the status API and the notifier against AMQP_URL and
REDIS_URL, print where they are, and stop them all cleanly on Ctrl-C or SIGTERM.

Locally the product's notification receiver is usually on this machine, so the notifier (and the status
API's endpoint registry) may reach loopback addresses unless NOTIFIER_ALLOW_LOOPBACK says otherwise."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from shared.config import DEFAULT_AMQP_URL, DEFAULT_REDIS_URL, DEV_SERVICE_TOKEN  # noqa: E402

SERVICES = ("receiver", "verifier", "status_api", "notifier")
HOW_TO_START = {
    "RabbitMQ": "start it with `rabbitmq-server -detached` (or `docker compose up rabbitmq`), "
    "or point AMQP_URL at a running broker",
    "Redis": "start it with `redis-server --daemonize yes` (or `docker compose up redis`), "
    "or point REDIS_URL at a running server",
}


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), 2):
            return True
    except OSError:
        return False


def check_servers() -> bool:
    ok = True
    # AMQP_URLS (the nodes of a cluster) replaces AMQP_URL when set: one live node is enough.
    amqp_urls = [u.strip() for u in os.environ.get("AMQP_URLS", "").split(",") if u.strip()]
    for name, urls, port in (
        ("RabbitMQ", amqp_urls or [os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL], 5672),
        ("Redis", [os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL], 6379),
    ):
        url = urls[0]
        if not any(reachable(u, port) for u in urls):
            host = urlsplit(url).hostname
            print(f"{name} is not reachable at {host}:{urlsplit(url).port or port}: {HOW_TO_START[name]}.")
            ok = False
    return ok


def wait_ready(urls: list[str], procs: list[subprocess.Popen[bytes]], timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    pending = list(urls)
    while pending and time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        try:
            with urllib.request.urlopen(pending[0], timeout=1) as resp:
                if resp.status == 200:
                    pending.pop(0)
                    continue
        except OSError:
            pass
        time.sleep(0.2)
    return not pending


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()


def main() -> int:
    if not check_servers():
        return 1
    token = os.environ.get("STATUS_API_TOKEN") or DEV_SERVICE_TOKEN
    loopback = os.environ.get("NOTIFIER_ALLOW_LOOPBACK") or "1"
    env = {**os.environ, "NOTIFIER_ALLOW_LOOPBACK": loopback}
    procs = [subprocess.Popen([sys.executable, "-m", f"services.{name}"], cwd=ROOT, env=env) for name in SERVICES]
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    r_port = os.environ.get("RECEIVER_PORT", "8080")
    a_port = os.environ.get("RECEIVER_ADMIN_PORT", "8083")
    s_port = os.environ.get("STATUS_API_PORT", "8081")
    v_port = os.environ.get("VERIFIER_PORT", "8082")
    n_port = os.environ.get("NOTIFIER_PORT", "8084")
    urls = [f"http://127.0.0.1:{p}/readyz" for p in (r_port, s_port, v_port, n_port)]
    if not wait_ready(urls, procs):
        print("the services did not become ready; see the log lines above")
        stop(procs)
        return 1
    allowed = loopback.lower() in ("1", "true", "yes", "on")
    notes = "   (loopback URLs allowed for local development: NOTIFIER_ALLOW_LOOPBACK)" if allowed else ""
    print(
        "\nhookstatus is running:\n"
        f"  receiver     http://127.0.0.1:{r_port}/hooks/<connection_id>\n"
        f"  receiver     http://127.0.0.1:{a_port}/metrics   (admin listener, loopback only)\n"
        f"  status API   http://127.0.0.1:{s_port}/v1/connections\n"
        f"  verifier     http://127.0.0.1:{v_port}/metrics\n"
        f"  notifier     http://127.0.0.1:{n_port}/metrics{notes}\n"
        + ("  secrets at rest: encrypted with the development key (set SECRETS_KEYS in production)\n"
           if not os.environ.get("SECRETS_KEYS") else "")
        + f"  service token: {token}"
        + ("   (development default; set STATUS_API_TOKEN)" if token == DEV_SERVICE_TOKEN else "")
        + "\n  try `make demo` in another terminal; Ctrl-C stops them all.\n",
        flush=True,
    )
    while not stopping and all(p.poll() is None for p in procs):
        time.sleep(0.2)
    code = 0 if stopping else 1
    if not stopping:
        print("a service exited; stopping the others")
    stop(procs)
    print("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
