"""Running a service process: logging, uvloop, the aiohttp app with a short shutdown timeout."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from shared.logs import setup_logging

SHUTDOWN_TIMEOUT_S = 5.0
# aiohttp's keep-alive timer also runs while a request's headers are still arriving, so it is what
# closes a client that trickles headers (slowloris). aiohttp's own default is an hour; longer than a
# load balancer's idle timeout (60 s on most) is all keep-alive needs.
IDLE_TIMEOUT_S = 75.0


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional (not on Windows)
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run_http_service(
    name: str,
    log_level: str,
    make_app: Callable[[], web.Application],
    host: str,
    port: int,
    keepalive_timeout_s: float = IDLE_TIMEOUT_S,
    reuse_port: bool = False,
) -> None:
    setup_logging(name, log_level)
    install_uvloop()
    web.run_app(
        make_app(),
        host=host,
        port=port,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        keepalive_timeout=keepalive_timeout_s,
        access_log=None,
        print=None,
        handle_signals=True,
        reuse_port=reuse_port,
    )


PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Ask the kernel to send this process ``signum`` when its parent dies (Linux; elsewhere nothing).

    Called in a child (a forked worker, or a subprocess's ``preexec_fn``), so a parent killed outright,
    even by SIGKILL or a test timeout, leaves nothing behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum)


def die_with_parent_killed() -> None:
    """``die_with_parent`` with SIGKILL: for a child that must not outlive its parent by even a
    graceful shutdown (a test's services)."""
    die_with_parent(signal.SIGKILL)


def _worker(target: Callable[[], None]) -> None:
    """A worker dies with its parent: a supervisor killed outright leaves no worker behind."""
    die_with_parent()
    target()


def run_workers(count: int, target: Callable[[], None]) -> None:
    """Run ``target`` in ``count`` processes (each binding its port with SO_REUSEPORT, so the kernel
    spreads connections over them). SIGTERM/SIGINT go to every worker; when one exits, the others are
    stopped too, and this returns."""
    # fork: called before any event loop, thread or connection exists, and needs no pickling.
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_worker, args=(target,), name=f"worker-{i}") for i in range(count)]
    for worker in workers:
        worker.start()

    def stop(signum: int = signal.SIGTERM, frame: object = None) -> None:
        for worker in workers:
            if worker.pid is not None and worker.exitcode is None:
                os.kill(worker.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sentinels = [w.sentinel for w in workers]
    multiprocessing.connection.wait(sentinels)
    stop()
    for worker in workers:
        worker.join()


async def sleep_unless(stopping: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``, or less if ``stopping`` is set meanwhile; True when it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
    return stopping.is_set()


def run_coroutine_service(name: str, log_level: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    setup_logging(name, log_level)
    install_uvloop()
    asyncio.run(main())


def stop_on_signals() -> asyncio.Event:
    """An event set on SIGTERM or SIGINT, for a service that runs until told to stop."""
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, event.set)
    return event
