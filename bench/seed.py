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


def resp(*args: bytes) -> bytes:
    """One command in the Redis protocol (RESP), packed: redis-py's own packing is most of the time a
    million connections take, so the seeder packs its commands itself and sends them in bulk."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


async def seed_to(client: aioredis.Redis, store: Store, seeded: Seeded, count: int, receiver: str) -> float:
    """Write connections until ``seeded.count`` reaches ``count``; the seconds it took."""
    started = time.perf_counter()
    now = int(time.time() * 1000)
    template = ConnectionRecord(
        id="", account_id="", provider="standard-webhooks", state="connected", webhook_url="", version=1,
        reason="verified_event", secret=seeded.secret, timeout_s=3600, created_at_ms=now, updated_at_ms=now,
        connected_at_ms=now, last_event_at_ms=now,
    ).to_hash()
    varying = ("id", "account_id", "webhook_url", *sorted(SEALED_FIELDS & set(template)))
    fixed = b"".join(resp(str(name).encode(), str(value).encode())[4:] for name, value in template.items()
                     if name not in varying)  # the fields every seeded hash shares, packed once
    k = store.keys
    connection = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        while seeded.count < count:
            upto = min(count, seeded.count + CHUNK)
            commands = []
            for n in range(seeded.count, upto):
                cid = seeded.cid(n)
                fields = {"id": cid, "account_id": seeded.account(n), "webhook_url": f"{receiver}/hooks/{cid}"}
                for name in varying[3:]:
                    fields[name] = store.sealer.seal(str(template[name]), cid)
                head = resp(b"HSET", k.conn(cid).encode(), *(x.encode() for kv in fields.items() for x in kv))
                size = 2 + 2 * (len(template))  # HSET, the key, every field and its value
                commands.append(b"*%d\r\n" % size + head.split(b"\r\n", 1)[1] + fixed)
                commands.append(resp(b"SADD", k.account(seeded.account(n)).encode(), cid.encode()))
            commands.append(resp(b"HINCRBY", k.state_counts.encode(), b"connected", b"%d" % (upto - seeded.count)))
            await connection.send_packed_command(b"".join(commands))
            for _ in commands:
                await connection.read_response()
            seeded.count = upto
    finally:
        await client.connection_pool.release(connection)
    return time.perf_counter() - started


async def used_memory(client: aioredis.Redis) -> int:
    return int((await client.info("memory"))["used_memory"])
