"""Redis access: every read and every atomic state transition of a connection.

Transitions are Lua scripts (``shared/lua/``), one round trip each, compare-and-set, publishing the
change on the ``changes`` channel in the same script. Errors that mean Redis is unreachable leave this
module as ``StoreUnavailable``; any other error (a bug) leaves it as itself.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import orjson
import redis.exceptions

from shared import lua, metrics
from shared.compare import any_matches
from shared.crypto import DEV_SECRETS_KEY, SEALED_FIELDS, Sealer
from shared.deadlines import Deadlines
from shared.errors import StoreUnavailable
from shared.keys import Keys
from shared.models import FAILING_AFTER_REJECTED, STATES, DeliveryMessage, now_ms
from shared.providers.core import TIMESTAMP_REASONS
from shared.records import ConnectionRecord, Credentials, TestWindow
from shared.redis import RedisClient, awaited, is_cluster, is_unreachable, run_and_wait
from shared.rhythm import RhythmSettings

T = TypeVar("T")
DEDUPE_TTL_S = 72 * 3600  # providers retry with the same event id for up to three days
DELIVERIES_KEPT = 50
TESTS_KEPT_S = 30 * 24 * 3600  # replaced test windows stay readable this long
TESTS_KEPT = 20  # ...and only the latest this many of them
SEALED = "(sealed)"  # a sealed field read only to be shown: it is there, not opened
READ_RETRY_S = 0.1  # a read on a Redis Cluster is tried again after this (``RedisStore._read``)


def _to_relay(status: str, added: int, waiting: int) -> bool:
    """A delivery that added notifications, or a redelivered one that finds some still waiting."""
    return bool(added) or (status == "duplicate" and bool(waiting))


@dataclass(frozen=True, slots=True)
class ApplyResult:
    status: str  # applied | duplicate | missing | ignored
    from_state: str
    to_state: str


class RedisStore:
    """What every store over Redis shares: the client, the key builder, the scripts, the sealer, and the
    one place where an unreachable Redis becomes ``StoreUnavailable``."""

    def __init__(self, client: RedisClient, prefix: str, sealer: Sealer | None = None, *,
                 deadline_s: float | None = None) -> None:
        self.redis = client
        self.clustered = is_cluster(client)
        # For a client without socket timeouts (``make_redis``): how long one call may take, as a whole.
        self.deadlines = Deadlines(deadline_s) if deadline_s is not None else None
        self.keys = Keys(prefix)
        self.scripts = lua.Scripts.register(client)
        # Secrets at rest: sealed on the way in, opened on the way out (shared/crypto.py). The services
        # pass the sealer of their SECRETS_KEYS; tools and tests get the development key's.
        self.sealer = sealer or Sealer((DEV_SECRETS_KEY,))

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        try:
            if self.deadlines is None:
                return await op()
            return await self.deadlines.run(op())
        except Exception as exc:
            if is_unreachable(exc):
                raise StoreUnavailable("Redis is not reachable") from exc
            raise

    async def _read(self, op: Callable[[], Awaitable[T]]) -> T:
        """``_call`` for a read that is tried once more, after ``READ_RETRY_S``, on a Redis Cluster: a
        command there that meets a node that just died makes redis-py drop every node's connections and
        re-read the slot map, failing the commands in flight on the healthy nodes too. A read of a
        healthy shard then succeeds on the second try; a read of the dead one is still an outage."""
        if not self.clustered:
            return await self._call(op)
        try:
            return await op()
        except Exception as exc:
            if not is_unreachable(exc):
                raise
        await asyncio.sleep(READ_RETRY_S)
        return await self._call(op)

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self.deadlines.seconds if self.deadlines else None):
                return bool(await awaited(self.redis.ping()))
        except Exception as exc:
            if is_unreachable(exc):
                return False
            raise


class Store(RedisStore):
    def __init__(self, client: RedisClient, prefix: str, sealer: Sealer | None = None, *,
                 wait_replicas: int = 0, wait_timeout_ms: int = 500, rhythm: RhythmSettings | None = None,
                 deadline_s: float | None = None) -> None:
        super().__init__(client, prefix, sealer, deadline_s=deadline_s)
        self.rhythm = rhythm or RhythmSettings()  # learned silence (shared/rhythm.py); the verifier's settings
        # A delivery's effect counts as stored once this many replicas have it (``WAIT``); 0: the primary.
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms

    # --- secrets at rest ------------------------------------------------------------------------

    def _sealed(self, cid: str, fields: dict[str, str | int]) -> dict[str, str | int]:
        return {name: self.sealer.seal(str(value), cid) if name in SEALED_FIELDS else value
                for name, value in fields.items()}

    def _opened(self, cid: str, raw: dict[str, str], opened: bool = True) -> dict[str, str]:
        """``raw`` with its sealed fields decrypted; with ``opened`` False (a record only to be shown,
        which never shows them) they are not: no secret and no settings, and ``prev_secret`` only says
        whether there is one (``SEALED``). Decrypting was a good part of a status read's CPU."""
        for name in SEALED_FIELDS:
            if raw.get(name):
                raw[name] = self.sealer.open(raw[name], cid) if opened else SEALED
        if not opened:
            raw.pop("secret", None)
            raw.pop("settings", None)
        return raw

    async def _publish(self, note: dict[str, Any]) -> None:
        # The cluster client has no publish(); classic PUBLISH reaches every node of a cluster.
        await self.redis.execute_command("PUBLISH", self.keys.changes, orjson.dumps(note))  # type: ignore[no-untyped-call]

    # --- connections --------------------------------------------------------------------------

    async def create(self, record: ConnectionRecord) -> None:
        cid, account_id, k, fields = record.id, record.account_id, self.keys, record.to_hash()

        async def op() -> None:
            # Separate slots, so separate commands; the pending index first, so no connection is
            # ever stored without the sweep seeing it.
            await awaited(self.redis.zadd(k.pending, {cid: record.pending_deadline_ms}))
            await awaited(self.redis.hset(k.conn(cid), mapping=self._sealed(cid, fields)))
            await awaited(self.redis.sadd(k.account(account_id), cid))
            await self._count_transition(None, "pending")
            await self._publish({"id": cid, "account_id": account_id, "version": record.version,
                                 "state": record.state})

        await self._call(op)

    async def get(self, cid: str, *, opened: bool = True) -> ConnectionRecord | None:
        """The connection; ``opened`` False: only to be shown (see ``_opened``)."""
        raw = await self._read(lambda: awaited(self.redis.hgetall(self.keys.conn(cid))))
        return ConnectionRecord.from_hash(self._opened(cid, raw, opened)) if raw else None

    async def get_credentials(self, cid: str) -> Credentials | None:
        """What the receiver verifies with (a few fields, not the whole hash), opened."""
        values = await self._read(lambda: awaited(self.redis.hmget(self.keys.conn(cid), list(Credentials.FIELDS))))
        return self._credentials(cid, values)

    async def get_credentials_many(self, ids: list[str]) -> list[Credentials | None]:
        """``get_credentials`` of each of ``ids``, in one round trip (a pipeline of HMGETs)."""

        async def op() -> list[list[str | None]]:
            async with self.redis.pipeline(transaction=False) as pipe:
                for cid in ids:
                    pipe.hmget(self.keys.conn(cid), list(Credentials.FIELDS))
                replies: list[list[str | None]] = await pipe.execute()
                return replies

        return [self._credentials(cid, values) for cid, values in zip(ids, await self._read(op), strict=True)]

    def _credentials(self, cid: str, values: list[str | None]) -> Credentials | None:
        return Credentials.from_values([self.sealer.open(value, cid) if value and name in SEALED_FIELDS else value
                                        for name, value in zip(Credentials.FIELDS, values, strict=True)])

    async def get_many(self, ids: list[str], *, opened: bool = True) -> list[ConnectionRecord]:
        """The connections of ``ids`` that exist, in one round trip."""
        return [record for record in await self.get_each(ids, opened=opened) if record is not None]

    async def get_each(self, ids: list[str], *, opened: bool = True) -> list[ConnectionRecord | None]:
        """``get`` of each of ``ids`` (None where there is none), in one round trip."""

        async def op() -> list[dict[str, str]]:
            async with self.redis.pipeline(transaction=False) as pipe:
                for cid in ids:
                    pipe.hgetall(self.keys.conn(cid))
                replies: list[dict[str, str]] = await pipe.execute()
                return replies

        return [ConnectionRecord.from_hash(self._opened(cid, raw, opened)) if raw else None
                for cid, raw in zip(ids, await self._read(op), strict=True)]

    async def account_connection_ids(self, account_id: str) -> list[str]:
        members = await self._call(lambda: awaited(self.redis.smembers(self.keys.account(account_id))))
        return sorted(str(m) for m in members)

    async def list_for_account(self, account_id: str, *, opened: bool = True) -> list[ConnectionRecord]:
        rows = await self.get_many(await self.account_connection_ids(account_id), opened=opened)
        return sorted(rows, key=lambda r: (r.created_at_ms, r.id))

    async def account_size(self, account_id: str) -> int:
        return int(await self._call(lambda: awaited(self.redis.scard(self.keys.account(account_id)))))

    # --- what a browser token created -------------------------------------------------------------

    async def count_token_create(self, token_id: str, lifetime_ms: int) -> int:
        """Count one creation by a browser token; the count lives as long as the token. Returns the
        creations so far, this one included."""
        attempts, _ = await self._call(
            lambda: lua.run(self.scripts.rate_window, [self.keys.token_creates(token_id)], [max(lifetime_ms, 1)])
        )
        return int(attempts)

    async def uncount_token_create(self, token_id: str) -> None:
        """Give back a creation that did not happen (the request was refused after it was counted)."""
        await self._call(lambda: awaited(self.redis.decr(self.keys.token_creates(token_id))))

    async def remember_token_created(self, token_id: str, cid: str, lifetime_ms: int) -> None:
        key = self.keys.token_created(token_id)

        async def op() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.sadd(key, cid)
                pipe.pexpire(key, max(lifetime_ms, 1))
                await pipe.execute()

        await self._call(op)

    async def token_created(self, token_id: str, cid: str) -> bool:
        return bool(await self._call(lambda: awaited(self.redis.sismember(self.keys.token_created(token_id), cid))))

    async def token_creates(self, token_id: str) -> int:
        value = await self._call(lambda: awaited(self.redis.get(self.keys.token_creates(token_id))))
        return int(value or 0)

    async def reconnect(
        self, cid: str, now: int, deadline: int, secret: str | None, prev_until: int,
        settings: dict[str, Any] | None,
    ) -> str | None:
        """Back to pending; ``None`` keeps the stored secret (settings), else they are replaced."""
        sealed_secret = self.sealer.seal(secret, cid) if secret else ""
        sealed_settings = self.sealer.seal(orjson.dumps(settings).decode(), cid) if settings is not None else ""
        args: lua.Args = ["reconnect", now, self.keys.changes, deadline, sealed_secret, prev_until, sealed_settings]

        async def op() -> str | None:
            before = await lua.run(self.scripts.set_state, [self.keys.conn(cid), self.keys.outbox(cid)], args)
            if before:
                await awaited(self.redis.zadd(self.keys.pending, {cid: deadline}))
                await awaited(self.redis.zrem(self.keys.disconnected, cid))  # back: no longer to be purged
                await self._count_transition(before, "pending")
            return str(before) if before else None

        return await self._call(op)

    async def disconnect(self, cid: str, now: int, purge_at: int | None = None) -> str | None:
        """Disconnect; with ``purge_at`` (ms) the connection is purged then (its retention's end)."""
        async def op() -> str | None:
            await self._index_outbox([cid], now)
            before = await lua.run(self.scripts.set_state, [self.keys.conn(cid), self.keys.outbox(cid)],
                                   ["disconnect", now, self.keys.changes])
            await awaited(self.redis.zrem(self.keys.pending, cid))
            if before and purge_at is not None:  # NX: disconnecting again does not extend the retention
                await awaited(self.redis.zadd(self.keys.disconnected, {cid: purge_at}, nx=True))
            if before:
                await self._count_transition(before, "disconnected")
            return str(before) if before else None

        return await self._call(op)

    # --- retention ------------------------------------------------------------------------------

    async def purge(self, cid: str) -> bool:
        """Erase a connection and everything about it: every key under its hash tag (the hash, its
        deliveries, tests, dedupe keys, buckets, outbox, held requests), its place in every index and its account's
        list; then publish the change, so caches drop it. False when there was no connection."""
        k = self.keys

        async def op() -> bool:
            account, state = await awaited(self.redis.hmget(k.conn(cid), ["account_id", "state"]))
            keys = [key async for key in self.redis.scan_iter(match=k.connection_pattern(cid), count=1000)]
            for start in range(0, len(keys), 500):
                await awaited(self.redis.unlink(*keys[start:start + 500]))
            for index in (k.pending, k.disconnected, k.silence_index, k.outbox_index):
                await awaited(self.redis.zrem(index, cid))
            # Its held requests went with its keys; their place in the total bound goes too (shared/held.py).
            async for member, _ in self.redis.zscan_iter(k.held_index, match=f"{cid}:*"):
                if await awaited(self.redis.zrem(k.held_index, member)):
                    await awaited(self.redis.decrby(k.held_bytes, int(str(member).rsplit(":", 1)[1])))
            due = [m async for m in self.redis.zscan_iter(k.tests_due, match=f"{cid}:*")]
            if due:
                await awaited(self.redis.zrem(k.tests_due, *(member for member, _ in due)))
            if account:
                await awaited(self.redis.srem(k.account(account), cid))
            if state:
                await self._uncount(state)
                await self._publish({"id": cid, "account_id": account or "", "version": 0, "state": "purged"})
            return state is not None

        return await self._call(op)

    async def reseal_all(self) -> tuple[int, int]:
        """Re-encrypt every connection's sealed fields under the current key (an operator's tool after
        a key rotation: ``scripts/rotate_secret_keys.py``; O(N) with SCAN). Returns (connections seen,
        connections rewritten). Each rewrite is a compare-and-set, so a change made meanwhile wins."""
        names = sorted(SEALED_FIELDS)

        async def op() -> tuple[int, int]:
            seen = rewritten = 0
            async for key in self.redis.scan_iter(match=self.keys.conn_pattern, count=1000):
                seen += 1
                for _ in range(5):
                    cid, *values = await awaited(self.redis.hmget(key, ["id", *names]))
                    if cid is None:
                        break  # purged meanwhile
                    args: lua.Args = []
                    for name, value in zip(names, values, strict=True):
                        if value and not self.sealer.is_current(value):
                            args += [name, value, self.sealer.reseal(value, cid)]
                    if not args:
                        break
                    if await lua.run(self.scripts.reseal, [key], args):
                        rewritten += 1
                        break
            return seen, rewritten

        return await self._call(op)

    async def due_disconnected(self, now: int, limit: int) -> list[str]:
        """Disconnected connections whose retention has ended."""
        return await self._due(self.keys.disconnected, now, limit)

    async def purge_due(self, cid: str, now: int) -> str | None:
        """The sweep's purge: only a connection still disconnected (a reconnect keeps it)."""
        state = await self._call(lambda: awaited(self.redis.hget(self.keys.conn(cid), "state")))
        if state not in (None, "disconnected"):
            await self._call(lambda: awaited(self.redis.zrem(self.keys.disconnected, cid)))
            return None
        return "purged" if await self.purge(cid) else None

    async def _uncount(self, state: str) -> None:
        await awaited(self.redis.hincrby(self.keys.state_counts, state, -1))

    async def learn_secret(self, cid: str, offered: str, placeholder_prefix: str, now: int) -> str:
        """Store a handshake's secret once: ``learnt``, ``same``, ``taken``, ``disconnected`` or
        ``missing``. The stored secret is sealed, so it is opened here to see whether it is still the
        placeholder; the write is a compare-and-set on the sealed value read (``learn_secret.lua``), so
        of two racing handshakes exactly one wins."""
        conn = self.keys.conn(cid)
        for _ in range(3):
            state, stored = await self._call(lambda: awaited(self.redis.hmget(conn, ["state", "secret"])))
            if state is None:
                return "missing"
            if state == "disconnected":
                return "disconnected"
            current = self.sealer.open(stored or "", cid)
            if not current.startswith(placeholder_prefix):
                return "same" if any_matches(offered.encode(), (current.encode(),)) else "taken"
            args: lua.Args = [self.sealer.seal(offered, cid), stored or "", now, self.keys.changes]
            outcome = str(await self._call(functools.partial(lua.run, self.scripts.learn_secret, [conn], args)))
            if outcome != "changed":  # changed: another handshake won meanwhile; look again
                return outcome
        return "taken"

    async def siblings(self, cid: str, limit: int, scan: int = 100) -> list[tuple[str, Credentials]]:
        """Up to ``limit`` other connections of ``cid``'s account with its provider, not disconnected, with
        their credentials (opened): candidates for a secret pasted in the wrong place. Reads at most
        ``scan`` of the account's connection ids (a random ``scan`` of them in a larger account)."""
        conn = self.keys.conn(cid)

        async def op() -> list[tuple[str, Credentials]]:
            account, provider = await awaited(self.redis.hmget(conn, ["account_id", "provider"]))
            if not account or limit < 1:
                return []
            key = self.keys.account(account)
            members: list[str] | set[str]
            if int(await awaited(self.redis.scard(key))) > scan:
                members = cast(list[str], await awaited(self.redis.srandmember(key, scan)))
            else:
                members = await awaited(self.redis.smembers(key))
            ids = sorted(str(m) for m in members if str(m) != cid)
            async with self.redis.pipeline(transaction=False) as pipe:
                for other in ids:
                    pipe.hmget(self.keys.conn(other), ["provider", "state", "account_id"])
                heads: list[list[str | None]] = await pipe.execute()
            same = [other for other, (p, state, acct) in zip(ids, heads, strict=True)
                    if p == provider and acct == account and state not in (None, "disconnected")][:limit]
            out = []
            for other in same:
                stored = await self.get_credentials(other)
                if stored is not None:
                    out.append((other, stored))
            return out

        return await self._call(op)

    async def deliveries(self, cid: str) -> list[dict[str, Any]]:
        raw = await self._call(
            lambda: awaited(self.redis.lrange(self.keys.deliveries(cid), 0, DELIVERIES_KEPT - 1))
        )
        return [orjson.loads(item) for item in raw]

    # --- the receiver's limit on rejected deliveries (services/receiver/limits.py) ---------------

    async def take_reject_token(
        self, cid: str, now: int, burst: int, per_s: float, ttl_ms: int, *, key: str | None = None
    ) -> int | None:
        """Take a token from the connection's bucket (``key``: another bucket of the connection, such as
        its handshake bucket): ``None`` when allowed, else ms until the next."""
        bucket = key or self.keys.reject_bucket(cid)
        reply = await self._call(lambda: lua.run(self.scripts.reject_bucket, [bucket], [now, burst, per_s, ttl_ms]))
        allowed, wait_ms = reply
        return None if int(allowed) else int(wait_ms)

    async def count_reverify(self, cid: str, window_ms: int) -> tuple[int, int]:
        """Count one re-verification of the connection's held requests: (in this window, ms until it ends)."""
        attempts, left_ms = await self._call(
            lambda: lua.run(self.scripts.rate_window, [self.keys.reverify_rate(cid)], [window_ms])
        )
        return int(attempts), int(left_ms)

    # --- test windows ---------------------------------------------------------------------------

    async def count_test_start(self, cid: str, window_ms: int) -> tuple[int, int]:
        """Count one attempt to open a test window: (attempts in this window, ms until it ends)."""
        attempts, left_ms = await self._call(
            lambda: lua.run(self.scripts.rate_window, [self.keys.test_rate(cid)], [window_ms])
        )
        return int(attempts), int(left_ms)

    async def start_test(
        self, cid: str, test_id: str, now: int, expires_at: int, kept: int = TESTS_KEPT
    ) -> str | None:
        """Open a test window: ``started``, ``disconnected``, or None when the connection is gone.
        The replaced window is archived; the archive keeps the latest ``kept``."""
        member, k = f"{cid}:{test_id}", self.keys
        args: lua.Args = [test_id, now, expires_at, k.changes, TESTS_KEPT_S, kept]

        async def op() -> str | None:
            # The due index first, so no open window is ever stored without the sweep seeing it.
            await awaited(self.redis.zadd(k.tests_due, {member: expires_at}))
            result = await lua.run(self.scripts.start_test, [k.conn(cid), k.tests(cid)], args)
            if result != "started":
                await awaited(self.redis.zrem(k.tests_due, member))
            return str(result) if result else None

        return await self._call(op)

    async def get_test(self, cid: str, test_id: str) -> TestWindow | None:
        """One test window of the connection, the current one or an archived (replaced) one."""

        async def op() -> TestWindow | None:
            current = await awaited(self.redis.hmget(self.keys.conn(cid), list(TestWindow.FIELDS)))
            if current[0] == test_id:
                return TestWindow.from_values(current)
            archived = await awaited(self.redis.hget(self.keys.tests(cid), test_id))
            return TestWindow.from_hash(orjson.loads(archived)) if archived else None

        return await self._call(op)

    async def due_tests(self, now: int, limit: int) -> list[str]:
        return await self._due(self.keys.tests_due, now, limit)

    async def expire_test(self, member: str, now: int) -> str | None:
        """Fail one due test window (compare-and-set on its id) and drop it from the index."""
        cid, _, test_id = member.partition(":")
        stamp_codes = ",".join(sorted(TIMESTAMP_REASONS))

        async def op() -> str | None:
            await self._index_outbox([cid], now)
            reason = await lua.run(self.scripts.expire_test, [self.keys.conn(cid), self.keys.outbox(cid)],
                                   [test_id, now, self.keys.changes, stamp_codes])
            await awaited(self.redis.zrem(self.keys.tests_due, member))
            return str(reason) if reason else None

        return await self._call(op)

    # --- the verifier's transitions -----------------------------------------------------------

    async def apply_delivery(self, msg: DeliveryMessage, consumed_at_ms: int = 0) -> ApplyResult:
        """Apply one delivery; ``consumed_at_ms``: when the verifier took it (a test window's hop)."""
        keys, args = self._apply_call(msg, consumed_at_ms)
        status, before, after, added, waiting, silent_at = await self._call(
            lambda: lua.run(self.scripts.apply_delivery, keys, args)
        )
        if status == "applied":
            await self._call(lambda: self._count_transition(before, after))
        if _to_relay(status, added, waiting):
            await self._call(lambda: self._index_outbox([msg.connection_id], now_ms()))
        if silent_at:
            await self._call(lambda: self._index_silence({msg.connection_id: silent_at}))
        return ApplyResult(status, before, after)

    async def apply_deliveries(
        self, msgs: list[DeliveryMessage], consumed_at_ms: list[int] | None = None
    ) -> list[ApplyResult | Exception]:
        """``apply_delivery`` for many deliveries in one round trip (a pipeline of the same script).
        Each gets its own result, or the error of its own script; Redis away fails them all."""
        calls: list[tuple[list[str], lua.Args]] = []

        async def first() -> list[Any]:  # preparing the calls is inside the boundary too
            ats = consumed_at_ms or [0] * len(msgs)
            calls.extend(self._apply_call(msg, at) for msg, at in zip(msgs, ats, strict=True))
            return await self._apply_pipelined(calls)

        results: list[Any] = await self._call(first)
        missing = [i for i, r in enumerate(results) if isinstance(r, redis.exceptions.NoScriptError)]
        if missing:  # a restarted or flushed Redis: load the script once, and run those again
            await self._call(lambda: awaited(self.redis.script_load(self.scripts.apply_delivery.script)))
            again = await self._call(lambda: self._apply_pipelined([calls[i] for i in missing]))
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        out: list[ApplyResult | Exception] = []
        to_relay: list[str] = []
        silences: dict[str, int] = {}
        for msg, result in zip(msgs, results, strict=True):
            if isinstance(result, Exception):
                out.append(result)
                continue
            status, before, after, added, waiting, silent_at = result
            if silent_at:
                silences[msg.connection_id] = max(silent_at, silences.get(msg.connection_id, 0))
            if status == "applied":
                await self._call(functools.partial(self._count_transition, before, after))
            if _to_relay(status, added, waiting):
                to_relay.append(msg.connection_id)
            out.append(ApplyResult(status, before, after))
        if to_relay:
            await self._call(functools.partial(self._index_outbox, to_relay, now_ms()))
        if silences:
            await self._call(functools.partial(self._index_silence, silences))
        return out

    async def _index_silence(self, due: dict[str, int]) -> None:
        """When each connection turns silent unless another verified event arrives, for the notifier's
        silence sweep (``shared/notify_store.py``). Replaced, not only moved later: a learned limit can
        shrink. A time written too early by a race is harmless (the sweep finds it not silent yet and
        puts the right time back)."""
        await awaited(self.redis.zadd(self.keys.silence_index, due))

    async def _index_outbox(self, cids: list[str], now: int) -> None:
        """Tell the notifier's relay which connections have notifications to publish (NX: an entry
        already waiting keeps its time). Written after the script on the delivery path (a delivery
        redelivered after a crash in between finds its outbox not empty and writes it then), before it
        elsewhere (an entry whose outbox turns out empty is dropped by the relay)."""
        await awaited(self.redis.zadd(self.keys.outbox_index, dict.fromkeys(cids, now), nx=True))

    async def _apply_pipelined(self, calls: list[tuple[list[str], lua.Args]]) -> list[Any]:
        script = self.scripts.apply_delivery
        if self.wait_replicas:
            shas = [(script.sha, keys, list(args)) for keys, args in calls]
            return await run_and_wait(self.redis, shas, self.wait_replicas, self.wait_timeout_ms)
        if self.clustered:
            # redis-py refuses scripts in a cluster pipeline: run them side by side instead, each sent
            # to the node of its connection's slot.
            results = await asyncio.gather(
                *(lua.run(script, keys, args) for keys, args in calls),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException) and (is_unreachable(result)
                                                          or not isinstance(result, Exception)):
                    raise result
            return list(results)
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                # redis-py types EVALSHA's keys and args as str; Redis takes any bulk string.
                pipe.evalsha(script.sha, len(keys), *cast(list[str], [*keys, *args]))
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            return replies

    def _apply_call(self, msg: DeliveryMessage, consumed_at_ms: int = 0) -> tuple[list[str], lua.Args]:
        cid, k = msg.connection_id, self.keys
        event_key = k.seen_event(cid, msg.event_id) if msg.event_id else k.seen_delivery(cid, msg.delivery_id)
        print_key = k.seen_event(cid, msg.fingerprint) if msg.fingerprint else k.seen_delivery(cid, msg.delivery_id)
        keys = [k.conn(cid), k.deliveries(cid), k.seen_delivery(cid, msg.delivery_id), event_key, k.outbox(cid),
                print_key]
        args: lua.Args = [
            msg.list_entry(),
            msg.outcome,
            msg.reason or "",
            msg.message or "",
            msg.received_at_ms,
            DEDUPE_TTL_S,
            k.changes,
            "1" if msg.event_id else "0",
            msg.secret_slot or "current",
            "1" if msg.handshake else "0",
            FAILING_AFTER_REJECTED,
            DELIVERIES_KEPT,
            "1" if msg.fingerprint else "0",
            msg.checked_at_ms or msg.received_at_ms,
            consumed_at_ms,
            msg.delivery_id,
            "1" if msg.recovered_from else "0",
            *self.rhythm.args(),
            k.changes_quiet,
        ]
        return keys, args

    async def record_test_hops(
        self, cid: str, test_id: str, delivery_id: str, outcome: str, reason: str | None, hops: dict[str, int]
    ) -> bool:
        """Record ``hops`` (name -> ms) of a test window's delivery, each once (``test_hop.lua``; ``test_id``
        '' means the current window). True when one was recorded (the change is then published)."""
        args: lua.Args = [test_id, delivery_id, outcome, reason or "", orjson.dumps(hops), self.keys.changes]
        return bool(await self._call(lambda: lua.run(self.scripts.test_hop, [self.keys.conn(cid)], args)))

    async def due_pending(self, now: int, limit: int) -> list[str]:
        return await self._due(self.keys.pending, now, limit)

    async def _due(self, index: str, now: int, limit: int) -> list[str]:
        return await self._call(
            lambda: awaited(self.redis.zrangebyscore(index, "-inf", now, start=0, num=limit))
        )

    async def expire_pending(self, cid: str, now: int) -> str | None:
        """Fail one due connection (compare-and-set); drop it from the index unless it is pending
        with a later deadline (a reconnect moved it)."""
        stamp_codes = ",".join(sorted(TIMESTAMP_REASONS))

        async def op() -> str | None:
            await self._index_outbox([cid], now)
            reason = await lua.run(self.scripts.expire_pending, [self.keys.conn(cid), self.keys.outbox(cid)],
                                   [now, self.keys.changes, stamp_codes])
            if reason:
                await self._count_transition("pending", "failed")
            await self._unindex_unless_pending(cid, now)
            return str(reason) if reason else None

        return await self._call(op)

    async def _unindex_unless_pending(self, cid: str, now: int) -> None:
        conn = self.keys.conn(cid)
        state, deadline = await awaited(self.redis.hmget(conn, ["state", "pending_deadline"]))
        if state == "pending" and int(deadline or 0) > now:
            return
        await awaited(self.redis.zrem(self.keys.pending, cid))
        # A reconnect may have slipped in between the read and the ZREM (its ZADD follows its state
        # change): look again and put it back, so no pending connection is ever missed by the sweep.
        state, deadline = await awaited(self.redis.hmget(conn, ["state", "pending_deadline"]))
        if state == "pending":
            await awaited(self.redis.zadd(self.keys.pending, {cid: int(deadline or 0)}))

    # --- the state counters and gauges (docs/METRICS.md) --------------------------------------

    async def _count_transition(self, before: str | None, after: str) -> None:
        """Every stored state change passes here once: it moves the connection between the Redis
        per-state counters (read by ``hookstatus_connections``) and counts the transition. A separate
        key from the connection's, so a separate command: a crash between the two can leave one
        counter off by one (docs/OPERATIONS.md says how to recount)."""
        if before == after:
            return
        await lua.run(self.scripts.count_transition, [self.keys.state_counts], [before or "", after])
        metrics.child(metrics.STATE_TRANSITIONS, before or "none", after).inc()

    async def state_counts(self) -> dict[str, int]:
        raw = await self._call(lambda: awaited(self.redis.hgetall(self.keys.state_counts)))
        return {str(state): int(n) for state, n in raw.items()}

    async def pending_past_deadline(self, now: int) -> int:
        """Index entries already due: O(log N), whatever the number of pending connections."""
        return int(await self._call(lambda: awaited(self.redis.zcount(self.keys.pending, "-inf", now))))

    async def recount_states(self) -> dict[str, int]:
        """Rebuild the per-state counters from the connections themselves: an operator's repair
        (``scripts/recount_states.py``), O(N) with SCAN, never on a request or scrape path. Changes
        made while it runs may be missed; run it again if traffic was high."""

        async def op() -> dict[str, int]:
            counts: dict[str, int] = dict.fromkeys(STATES, 0)
            async for key in self.redis.scan_iter(match=self.keys.conn_pattern, count=1000):
                state = await awaited(self.redis.hget(key, "state"))
                if state in counts:
                    counts[state] += 1
            await awaited(self.redis.hset(self.keys.state_counts, mapping=dict(counts)))
            return counts

        return await self._call(op)
