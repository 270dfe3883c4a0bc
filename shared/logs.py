"""Structured logs: one JSON object per line. Callers pass context with ``extra={...}``; bodies and
secrets are never passed."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

import orjson
from aiohttp.http_exceptions import BadHttpMessage

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class Summary:
    """Routine events counted and logged as one line per ``interval_s`` (only when something happened),
    instead of one line each: ``{"event": <event>, "total": 812, "counts": {"<a>": {"<b>": 812}},
    "interval_s": 1.0}``. Under load a line per webhook was a good share of a service's CPU.

    ``count`` must be called from the event loop (it arms the timer); ``flush`` logs what is counted now
    (a service calls it on its way out, so nothing counted is left unlogged)."""

    def __init__(self, logger: logging.Logger, event: str, *, level: int = logging.INFO,
                 interval_s: float = 1.0) -> None:
        self.logger = logger
        self.event = event
        self.level = level
        self.interval_s = interval_s
        self._counts: dict[tuple[str, str], int] = {}
        self._timer: asyncio.TimerHandle | None = None

    def count(self, group: str, key: str) -> None:
        counts = self._counts
        counts[group, key] = counts.get((group, key), 0) + 1
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval_s, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        counts, self._counts = self._counts, {}
        if not counts:
            return
        nested: dict[str, dict[str, int]] = {}
        for (group, key), n in counts.items():
            nested.setdefault(group, {})[key] = n
        self.logger.log(self.level, self.event, extra={"total": sum(counts.values()), "counts": nested,
                                                       "interval_s": self.interval_s})


class ClientGarbageIsDebug(logging.Filter):
    """aiohttp logs every request its parser refuses (answered 400) as an ERROR with a traceback: any
    client could fill the logs and page someone. Those are the client's errors: logged at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BadHttpMessage):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(ClientGarbageIsDebug())
