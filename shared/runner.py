"""Running a service process: logging, uvloop, the aiohttp app with a short shutdown timeout."""

from __future__ import annotations

import asyncio
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
    )


def run_coroutine_service(name: str, log_level: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    setup_logging(name, log_level)
    install_uvloop()
    asyncio.run(main())
