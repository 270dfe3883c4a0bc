"""Redis access for the product's notifications: the endpoints, their attempts logs and failure
counters, and the outbox relay (what the transition scripts recorded, read and dropped once
published). Redis errors leave this module as ``StoreUnavailable``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from shared import lua
from shared.crypto import SEALED_FIELDS
from shared.models import iso
from shared.records import ConnectionRecord
from shared.redis import awaited
from shared.store import RedisStore

ATTEMPTS_KEPT = 100


def endpoint_view(raw: dict[str, str]) -> dict[str, Any]:
    """The public endpoint object. Never includes the secret (shown once, at creation)."""
    return {
        "id": raw["id"],
        "url": raw["url"],
        "account_id": raw.get("account_id") or None,
        "events": orjson.loads(raw["events"]) if raw.get("events") else None,
        "status": raw.get("status") or "enabled",
        "disabled_reason": raw.get("disabled_reason") or None,
        "disabled_at": iso(raw.get("disabled_at")),
        "failed_events": int(raw.get("failed_events") or 0),
        "failing_since": iso(raw.get("failing_since")),
        "created_at": iso(raw.get("created_at")),
    }


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    url: str
    secret: str
    account_id: str | None
    events: tuple[str, ...] | None  # None: every type
    status: str

    @classmethod
    def from_raw(cls, raw: dict[str, str]) -> Endpoint:
        events = orjson.loads(raw["events"]) if raw.get("events") else None
        return cls(raw["id"], raw["url"], raw["secret"], raw.get("account_id") or None,
                   tuple(events) if events is not None else None, raw.get("status") or "enabled")

    def wants(self, kind: str, account_id: str | None) -> bool:
        if self.status != "enabled" or (self.events is not None and kind not in self.events):
            return False
        return self.account_id is None or self.account_id == account_id


class NotifyStore(RedisStore):
    """Notification endpoints, their attempts logs and the outboxes; an endpoint's signing secret is
    sealed at rest like a connection's."""

    # --- endpoints ------------------------------------------------------------------------------

    async def create_endpoint(self, fields: dict[str, Any]) -> None:
        eid, k = fields["id"], self.keys

        async def op() -> None:
            sealed = {**fields, "secret": self.sealer.seal(str(fields["secret"]), eid)} if fields.get("secret") \
                else fields
            await awaited(self.redis.hset(k.endpoint(eid), mapping=sealed))
            account = fields.get("account_id")
            await awaited(self.redis.sadd(k.account_endpoints(account) if account else k.endpoints_any_account,
                                          eid))
            await awaited(self.redis.sadd(k.endpoints, eid))

        await self._call(op)

    async def get_endpoint(self, eid: str) -> dict[str, str] | None:
        raw = await self._call(lambda: awaited(self.redis.hgetall(self.keys.endpoint(eid))))
        if raw.get("secret"):
            raw["secret"] = self.sealer.open(raw["secret"], eid)
        return raw or None

    async def list_endpoints(self, account_id: str | None) -> list[dict[str, str]]:
        key = self.keys.account_endpoints(account_id) if account_id else self.keys.endpoints
        ids = sorted(await self._call(lambda: awaited(self.redis.smembers(key))))
        rows = [row for row in [await self.get_endpoint(eid) for eid in ids] if row]
        return sorted(rows, key=lambda r: (r.get("created_at", ""), r["id"]))

    async def delete_endpoint(self, raw: dict[str, str]) -> None:
        eid, k, account = raw["id"], self.keys, raw.get("account_id")

        async def op() -> None:
            await awaited(self.redis.srem(k.account_endpoints(account) if account else k.endpoints_any_account,
                                          eid))
            await awaited(self.redis.srem(k.endpoints, eid))
            await awaited(self.redis.srem(k.endpoints_disabled, eid))
            await awaited(self.redis.delete(k.endpoint(eid)))
            await awaited(self.redis.delete(k.endpoint_attempts(eid)))

        await self._call(op)

    async def endpoints_for(self, account_id: str | None) -> list[Endpoint]:
        """Every endpoint that may want an event of this account (filter with ``Endpoint.wants``)."""
        ids = set(await self._call(lambda: awaited(self.redis.smembers(self.keys.endpoints_any_account))))
        if account_id:
            key = self.keys.account_endpoints(account_id)
            ids |= set(await self._call(lambda: awaited(self.redis.smembers(key))))
        found = [await self.get_endpoint(eid) for eid in sorted(ids)]
        return [Endpoint.from_raw(raw) for raw in found if raw and raw.get("secret")]

    async def reseal_endpoints(self) -> tuple[int, int]:
        """Re-encrypt every endpoint's secret under the current key (``scripts/rotate_secret_keys.py``):
        (endpoints seen, endpoints rewritten); each rewrite a compare-and-set."""
        pattern = self.keys.endpoint("*")

        async def op() -> tuple[int, int]:
            seen = rewritten = 0
            async for key in self.redis.scan_iter(match=pattern, count=1000):
                seen += 1
                for _ in range(5):
                    eid, value = await awaited(self.redis.hmget(key, ["id", "secret"]))
                    if eid is None or not value or self.sealer.is_current(value):
                        break
                    args: lua.Args = ["secret", value, self.sealer.reseal(value, eid)]
                    if await lua.run(self.scripts.reseal, [key], args):
                        rewritten += 1
                        break
            return seen, rewritten

        return await self._call(op)

    async def disabled_count(self) -> int:
        return int(await self._call(lambda: awaited(self.redis.scard(self.keys.endpoints_disabled))))

    # --- attempts and failure counters -----------------------------------------------------------

    async def log_attempt(self, eid: str, entry: dict[str, Any]) -> None:
        key = self.keys.endpoint_attempts(eid)

        item = orjson.dumps(entry).decode()

        async def op() -> None:
            # Idempotent: a step run again after a lost reply leaves one copy of the entry.
            await awaited(self.redis.lrem(key, 0, item))
            await awaited(self.redis.lpush(key, item))
            await awaited(self.redis.ltrim(key, 0, ATTEMPTS_KEPT - 1))

        await self._call(op)

    async def attempts(self, eid: str) -> list[dict[str, Any]]:
        key = self.keys.endpoint_attempts(eid)
        raw = await self._call(lambda: awaited(self.redis.lrange(key, 0, ATTEMPTS_KEPT - 1)))
        return [orjson.loads(item) for item in raw]

    async def delivered(self, eid: str) -> None:
        """An event reached the endpoint: its failure counters start again."""
        key = self.keys.endpoint(eid)

        async def op() -> None:
            if await awaited(self.redis.exists(key)):
                await awaited(self.redis.hset(key, mapping={"failed_events": 0, "failing_since": ""}))

        await self._call(op)

    async def attempt_failed(self, eid: str, now: int, gave_up: bool) -> tuple[int, int]:
        """Count a failed attempt (and a failed event when ``gave_up``); return (failed events in a
        row, failing since ms)."""
        key = self.keys.endpoint(eid)

        async def op() -> tuple[int, int]:
            if not await awaited(self.redis.exists(key)):
                return 0, now
            since = await awaited(self.redis.hget(key, "failing_since"))
            if not since:  # absent, or "" after a success: this failure starts a new run
                await awaited(self.redis.hset(key, "failing_since", str(now)))
                since = str(now)
            if gave_up:
                failed = await awaited(self.redis.hincrby(key, "failed_events", 1))
            else:
                failed = int(await awaited(self.redis.hget(key, "failed_events")) or 0)
            return int(failed), int(since)

        return await self._call(op)

    async def disable(self, eid: str, reason: str, now: int) -> None:
        key = self.keys.endpoint(eid)

        async def op() -> None:
            if await awaited(self.redis.exists(key)):
                await awaited(self.redis.hset(key, mapping={"status": "disabled", "disabled_reason": reason,
                                                            "disabled_at": now}))
                await awaited(self.redis.sadd(self.keys.endpoints_disabled, eid))

        await self._call(op)

    async def enable(self, eid: str) -> bool:
        """Enable an endpoint again (the product fixed it), its failure counters cleared; False when it
        does not exist. The set of disabled endpoints is left last, so the gauge never counts it twice."""
        key = self.keys.endpoint(eid)

        async def op() -> bool:
            if not await awaited(self.redis.exists(key)):
                return False
            await awaited(self.redis.hset(key, mapping={"status": "enabled", "disabled_reason": "", "disabled_at": "",
                                                        "failed_events": 0, "failing_since": ""}))
            await awaited(self.redis.srem(self.keys.endpoints_disabled, eid))
            return True

        return await self._call(op)

    # --- the outbox relay -------------------------------------------------------------------------

    async def outbox_due(self, now: int, limit: int) -> list[str]:
        return await self._call(
            lambda: awaited(self.redis.zrangebyscore(self.keys.outbox_index, "-inf", now, start=0, num=limit))
        )

    async def claim(self, cid: str, now: int, lease_ms: int) -> bool:
        return bool(await self._call(lambda: lua.run(self.scripts.outbox_claim, [self.keys.outbox_index],
                                                         [cid, now, now + lease_ms])))

    async def outbox(self, cid: str, limit: int) -> tuple[list[dict[str, Any]], ConnectionRecord | None]:
        """The connection's waiting notifications (oldest first) and the connection as stored now."""
        k = self.keys

        async def op() -> tuple[list[dict[str, Any]], ConnectionRecord | None]:
            entries = await awaited(self.redis.lrange(k.outbox(cid), 0, limit - 1))
            raw = await awaited(self.redis.hgetall(k.conn(cid)))
            # The notifier needs no secret of the connection: its sealed fields are left out, not opened.
            record = ConnectionRecord.from_hash({n: v for n, v in raw.items() if n not in SEALED_FIELDS}) \
                if raw else None
            return [_entry(e) for e in entries], record

        return await self._call(op)

    async def outbox_done(self, cid: str, ids: list[str], now: int) -> None:
        """Drop the published entries; keep the connection in the index while entries are left (due
        now), take it out otherwise (and put it back if a script appended meanwhile)."""
        k = self.keys

        async def op() -> None:
            if ids:
                left = await lua.run(self.scripts.outbox_done, [k.outbox(cid)], list(ids))
            else:
                left = await awaited(self.redis.llen(k.outbox(cid)))
            if left:
                await awaited(self.redis.zadd(k.outbox_index, {cid: now}))
                return
            await awaited(self.redis.zrem(k.outbox_index, cid))
            if await awaited(self.redis.llen(k.outbox(cid))):
                await awaited(self.redis.zadd(k.outbox_index, {cid: now}, nx=True))

        await self._call(op)

    async def outbox_retry_at(self, cid: str, at: int) -> None:
        await self._call(lambda: awaited(self.redis.zadd(self.keys.outbox_index, {cid: at}, xx=True)))


    # --- the silence sweep ------------------------------------------------------------------------

    async def silence_due(self, now: int, limit: int) -> list[str]:
        return await self._call(
            lambda: awaited(self.redis.zrangebyscore(self.keys.silence_index, "-inf", now, start=0, num=limit))
        )

    async def mark_silent(self, cid: str, now: int) -> None:
        """Notify ``connection.silent`` for one due connection (once per silence), then keep it in the
        index only while it can still turn silent later (a verified event moved its time)."""
        k = self.keys

        async def op() -> None:
            await awaited(self.redis.zadd(k.outbox_index, {cid: now}, nx=True))  # before: never missed
            silent_at = int(await lua.run(self.scripts.mark_silent, [k.conn(cid), k.outbox(cid)], [now]))
            if silent_at > now:
                await awaited(self.redis.zadd(k.silence_index, {cid: silent_at}, gt=True))
                return
            await awaited(self.redis.zrem(k.silence_index, cid))
            # A verified event may have slipped in between the script and the ZREM: put it back if so.
            again = int(await lua.run(self.scripts.mark_silent, [k.conn(cid), k.outbox(cid)], [now]))
            if again > now:
                await awaited(self.redis.zadd(k.silence_index, {cid: again}, gt=True))

        await self._call(op)


def _entry(raw: str) -> dict[str, Any]:
    try:
        entry = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"id": "", "type": ""}
    return entry if isinstance(entry, dict) else {"id": "", "type": ""}
