"""Limits that keep abusive clients from costing more than they are worth.

A per-connection limit on *rejected* deliveries, so a flood of bad signatures cannot fill Redis or
the queue; and one on *handshakes*, which anyone with the URL can trigger (an echo proves nothing), so
answering them cannot fill the deliveries list and the dedupe keys either (over: 429
``too_many_handshakes``).

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
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from shared.errors import ApiError, BadRequest, ConfigError, PayloadTooLarge
from shared.store import Store

BUCKET_TTL_FLOOR_MS = 60_000
MAX_REMEMBERED = 100_000


@dataclass(frozen=True, slots=True)
class RejectLimit:
    burst: int
    per_s: float
    setting: str = "REJECTED"  # the settings' name, for the error message

    def __post_init__(self) -> None:
        if self.burst < 1 or not self.per_s > 0:
            raise ConfigError(f"{self.setting}_BURST must be at least 1 and {self.setting}_PER_S above 0")

    @property
    def ttl_ms(self) -> int:
        """Long enough for an empty bucket to fill again; after that it is as good as new."""
        return max(BUCKET_TTL_FLOOR_MS, math.ceil(self.burst / self.per_s * 1000))


class RejectLimiter:
    """A token bucket per connection in Redis; ``key`` names it (the rejected-deliveries bucket unless
    told otherwise)."""

    def __init__(self, store: Store, limit: RejectLimit, key: Callable[[str], str] | None = None) -> None:
        self._store = store
        self._limit = limit
        self._key = key or store.keys.reject_bucket
        # Connections this process saw over their budget, and until when (ms): known without Redis.
        self._over_until: dict[str, int] = {}

    async def retry_after_s(self, cid: str, now_ms: int) -> int | None:
        """Take a token for one rejected delivery (or handshake): ``None`` when allowed, else seconds to wait."""
        limit = self._limit
        wait_ms = await self._store.take_reject_token(cid, now_ms, limit.burst, limit.per_s, limit.ttl_ms,
                                                      key=self._key(cid))
        if wait_ms is None:
            self._over_until.pop(cid, None)
            return None
        if len(self._over_until) >= MAX_REMEMBERED:
            self._over_until.clear()  # a safety net: forgetting only costs a Redis round trip
        self._over_until[cid] = now_ms + wait_ms
        return max(1, math.ceil(wait_ms / 1000))

    def over_budget_s(self, cid: str, now_ms: int) -> int | None:
        """Seconds until the connection's bucket has a token again, when this process already knows it
        is empty (from an earlier 429); ``None`` otherwise. Consulted before verification, so requests
        over the budget pay no diagnosis and no Redis round trip."""
        until = self._over_until.get(cid)
        if until is None:
            return None
        if until <= now_ms:
            del self._over_until[cid]
            return None
        return max(1, math.ceil((until - now_ms) / 1000))


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than the limit of {max_bytes} bytes.", limit_bytes=max_bytes)


async def read_body(request: web.Request, timeout_s: float, max_bytes: int) -> bytes:
    """The whole raw body, within ``timeout_s`` (a client that trickles it is cut off with 408).

    A Content-Length over ``max_bytes`` is refused (413, ``body_too_large``) before reading anything, and
    so is a body that grows past it while streaming (aiohttp's ``client_max_size``); a body that ends before its
    Content-Length (the client went away, or sent less than it announced) is a 400, not our error.
    """
    announced = request.content_length
    if announced is not None and announced > max_bytes:
        raise _too_large(max_bytes)
    try:
        if request.content.is_eof():  # all of it arrived with the headers (most webhooks): no wait to bound
            return await request.read()
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(max_bytes) from None
    except TimeoutError:
        raise ApiError("The request body did not arrive in time.", code="body_timeout", status=408) from None
    except (ConnectionResetError, RequestPayloadError) as exc:
        raise BadRequest("The request body is incomplete.", code="incomplete_body") from exc
