"""A per-connection limit on *rejected* deliveries, so a flood of bad signatures cannot fill Redis or
the queue.

Each connection has a token bucket in Redis (``shared/lua/reject_bucket.lua``; the time is passed in,
so every receiver replica shares one bucket): ``rejected_burst`` rejected deliveries at once, then
``rejected_per_s`` a second. A rejected delivery over the limit is answered 429 with ``Retry-After`` and
nothing is published. Verified deliveries never touch the bucket: a flood of forgeries can never
crowd out the real provider.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources

from shared.errors import StoreUnavailable
from shared.store import REDIS_ERRORS, Store

BUCKET_TTL_FLOOR_MS = 60_000


@dataclass(frozen=True, slots=True)
class RejectLimit:
    burst: int
    per_s: float

    @property
    def ttl_ms(self) -> int:
        """Long enough for an empty bucket to fill again; after that it is as good as new."""
        return max(BUCKET_TTL_FLOOR_MS, math.ceil(self.burst / self.per_s * 1000))


class RejectLimiter:
    def __init__(self, store: Store, limit: RejectLimit) -> None:
        self._store = store
        self._limit = limit
        script = resources.files("shared").joinpath("lua", "reject_bucket.lua").read_text()
        self._take = store.redis.register_script(script)

    async def retry_after_s(self, cid: str, now_ms: int) -> int | None:
        """Take a token for one rejected delivery: ``None`` when allowed, else seconds to wait."""
        key = self._store.keys.reject_bucket(cid)
        limit = self._limit
        try:
            allowed, wait_ms = await self._take(keys=[key], args=[now_ms, limit.burst, limit.per_s, limit.ttl_ms])
        except REDIS_ERRORS as exc:
            raise StoreUnavailable("Redis is not reachable") from exc
        return None if int(allowed) else max(1, math.ceil(int(wait_ms) / 1000))
