"""Running a service process: logging, uvloop, the aiohttp app with a short shutdown timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from shared.logs import setup_logging

SHUTDOWN_TIMEOUT_S = 5.0


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional (not on Windows)
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run_http_service(
    name: str, log_level: str, make_app: Callable[[], web.Application], host: str, port: int
) -> None:
    setup_logging(name, log_level)
    install_uvloop()
    web.run_app(
        make_app(),
        host=host,
        port=port,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        access_log=None,
        print=None,
        handle_signals=True,
    )


def run_coroutine_service(name: str, log_level: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    setup_logging(name, log_level)
    install_uvloop()
    asyncio.run(main())
