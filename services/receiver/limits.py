"""Limits that keep abusive clients from costing more than they are worth.

A per-connection limit on *rejected* deliveries, so a flood of bad signatures cannot fill Redis or
the queue.

Each connection has a token bucket in Redis (``shared/lua/reject_bucket.lua``; the time is passed in,
so every receiver replica shares one bucket): ``rejected_burst`` rejected deliveries at once, then
``rejected_per_s`` a second. A rejected delivery over the limit is answered 429 with ``Retry-After`` and
nothing is published. Verified deliveries never touch the bucket: a flood of forgeries can never
crowd out the real provider.

A read timeout on the body, so a client that trickles bytes cannot hold a request open for ever
(header size is bounded by aiohttp's ``max_line_size``/``max_field_size``, body size by
``client_max_size``).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from shared.errors import ApiError, BadRequest, ConfigError
from shared.store import Store

BUCKET_TTL_FLOOR_MS = 60_000


@dataclass(frozen=True, slots=True)
class RejectLimit:
    burst: int
    per_s: float

    def __post_init__(self) -> None:
        if self.burst < 1 or not self.per_s > 0:
            raise ConfigError("REJECTED_BURST must be at least 1 and REJECTED_PER_S above 0")

    @property
    def ttl_ms(self) -> int:
        """Long enough for an empty bucket to fill again; after that it is as good as new."""
        return max(BUCKET_TTL_FLOOR_MS, math.ceil(self.burst / self.per_s * 1000))


class RejectLimiter:
    def __init__(self, store: Store, limit: RejectLimit) -> None:
        self._store = store
        self._limit = limit

    async def retry_after_s(self, cid: str, now_ms: int) -> int | None:
        """Take a token for one rejected delivery: ``None`` when allowed, else seconds to wait."""
        limit = self._limit
        wait_ms = await self._store.take_reject_token(cid, now_ms, limit.burst, limit.per_s, limit.ttl_ms)
        return None if wait_ms is None else max(1, math.ceil(wait_ms / 1000))


async def read_body(request: web.Request, timeout_s: float, max_bytes: int) -> bytes:
    """The whole raw body, within ``timeout_s`` (a client that trickles it is cut off with 408).

    A Content-Length over ``max_bytes`` is refused (413) before reading anything; a body that grows
    past it while streaming is aiohttp's own 413 (``client_max_size``); a body that ends before its
    Content-Length (the client went away, or sent less than it announced) is a 400, not our error.
    """
    announced = request.content_length
    if announced is not None and announced > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=announced)
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        raise ApiError("The request body did not arrive in time.", code="body_timeout", status=408) from None
    except (ConnectionResetError, RequestPayloadError) as exc:
        raise BadRequest("The request body is incomplete.", code="incomplete_body") from exc
