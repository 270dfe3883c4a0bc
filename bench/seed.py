"""Many connections at once: written straight into Redis as the status API would store them, so a run
can hold 100,000 or a million of them without a million API calls.

Seeded connections are ``connected`` Standard Webhooks connections of ``PER_ACCOUNT`` to an account,
all with one secret (sealed per connection, like every stored secret), and ids made of a stem (16 hex
digits, random per run) and their number (16 hex digits): the load generator builds their URLs from the
stem and a count (``bench.loadgen.seeded_url``) instead of carrying a million URLs.
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from bench.plan import PER_ACCOUNT
from shared.crypto import SEALED_FIELDS
from shared.records import ConnectionRecord
from shared.store import Store

CHUNK = 2000  # connections per pipeline


@dataclass
class Seeded:
    """The seeded connections so far: ids ``stem + f"{n:016x}"`` for n < count."""

    stem: str = field(default_factory=lambda: secrets.token_hex(8))
    secret: str = field(default_factory=lambda: "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode())
    count: int = 0

    def cid(self, n: int) -> str:
        return f"{self.stem}{n:016x}"

    def account(self, n: int) -> str:
        return f"acct-seed-{n // PER_ACCOUNT}"

    def spec(self, bases: list[str], count: int, secret: str | None = None, suffix: str = "") -> dict[str, object]:
        """The load generator's ``seeded`` entry for the first ``count`` of them."""
        return {"bases": bases, "stem": self.stem, "count": min(count, self.count),
                "secret": secret or self.secret, "suffix": suffix}


async def seed_to(client: aioredis.Redis, store: Store, seeded: Seeded, count: int, receiver: str) -> float:
    """Write connections until ``seeded.count`` reaches ``count``; the seconds it took."""
    started = time.perf_counter()
    now = int(time.time() * 1000)
    template = ConnectionRecord(
        id="", account_id="", provider="standard-webhooks", state="connected", webhook_url="", version=1,
        reason="verified_event", secret=seeded.secret, timeout_s=3600, created_at_ms=now, updated_at_ms=now,
        connected_at_ms=now, last_event_at_ms=now,
    ).to_hash()
    k = store.keys
    while seeded.count < count:
        upto = min(count, seeded.count + CHUNK)
        async with client.pipeline(transaction=False) as pipe:
            for n in range(seeded.count, upto):
                cid = seeded.cid(n)
                fields = {**template, "id": cid, "account_id": seeded.account(n),
                          "webhook_url": f"{receiver}/hooks/{cid}"}
                for name in SEALED_FIELDS:
                    if fields.get(name):
                        fields[name] = store.sealer.seal(str(fields[name]), cid)
                pipe.hset(k.conn(cid), mapping=fields)
                pipe.sadd(k.account(seeded.account(n)), cid)
            pipe.hincrby(k.state_counts, "connected", upto - seeded.count)
            await pipe.execute()
        seeded.count = upto
    return time.perf_counter() - started


async def used_memory(client: aioredis.Redis) -> int:
    return int((await client.info("memory"))["used_memory"])
