"""What the receiver needs to know about a connection to verify a request for it, and a cache of it.

Without the cache every webhook costs one Redis round trip (HMGET) before it can be verified. The
cache keeps, per connection, the fields the receiver uses. It is kept right by the ``changes``
channel, which carries every stored change of any connection (with its id and new state):

- a change that can alter what the receiver uses evicts the entry at once: a disconnect, a reconnect
  (always back to ``pending``: new secret, settings), any change of state, and a test window that
  opens or closes (the change says ``test``);
- the one change that can alter a secret without changing the state, a handshake that teaches a new
  secret to a connection that is already connected, is covered by ``reload_on_mismatch``: a signature
  that does not match a *cached* secret is checked once more against a fresh read before it is refused;
- every entry lives at most ``ttl_s`` (a safety net for anything the rules above do not foresee);
- while the subscription is down (or not yet up), nothing is cached: every request reads Redis,
  and the cache starts empty once it is back (changes may have been missed meanwhile).

A read that raced with a change (it began before an eviction that arrived while it was in flight) is
used for that request but not kept.

Misses are read together (``shared/coalesce.py``): the reads asked for during one turn of the event
loop go to Redis as one pipeline, and two requests for the same connection in that turn share one read.
Under load (many connections, most of them not cached) this is what keeps a miss cheap.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.changes import follow_changes
from shared.coalesce import TurnReads
from shared.records import Credentials
from shared.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConnectionTarget:
    connection_id: str
    provider: str
    state: str
    webhook_url: str
    secret: str = field(repr=False)
    previous_secret: str | None = field(default=None, repr=False)
    # A previous secret whose rotation window has ended: never verifies, only explains a failure.
    retired_secret: str | None = field(default=None, repr=False)
    settings: dict[str, Any] = field(default_factory=dict)
    testing: bool = False  # a test window is open: record the hops of what arrives (docs/API.md)

    def secrets(self) -> tuple[str, str | None]:
        return self.secret, self.previous_secret


def target_from(cid: str, stored: Credentials, now: int) -> ConnectionTarget:
    """The target for the ``stored`` credentials as of ``now`` (ms)."""
    prev = stored.prev_secret
    previous = prev if prev and stored.prev_secret_until_ms > now else None
    return ConnectionTarget(
        connection_id=cid,
        provider=stored.provider,
        state=stored.state,
        webhook_url=stored.webhook_url,
        secret=stored.secret,
        previous_secret=previous,
        retired_secret=prev if prev and previous is None else None,
        settings=stored.settings,
        testing=stored.testing,
    )


async def load_target(store: Store, cid: str, now: int) -> ConnectionTarget | None:
    stored = await store.get_credentials(cid)
    return target_from(cid, stored, now) if stored is not None else None


@dataclass(slots=True)
class _Entry:
    stored: Credentials
    target: ConnectionTarget  # as of when it was read; still right until ``changes_at_ms``
    changes_at_ms: float  # when the previous secret's window ends (the target then changes by time)
    expires_at: float  # monotonic

    @property
    def state(self) -> str:
        return self.target.state


class TargetCache:
    """Connection targets kept in this process, evicted by the ``changes`` channel (see the module
    docstring). ``run`` must be running for anything to be cached."""

    def __init__(self, store: Store, ttl_s: float, max_entries: int) -> None:
        self.store = store
        self.reads: TurnReads[str, Credentials | None] = TurnReads(store.get_credentials_many)
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # Reads in flight, per connection; a change to it meanwhile removes them, so they are not kept.
        self._reading: dict[str, set[object]] = {}
        self._generation = 0  # bumped by clear(): reads begun before it are not kept
        self.live = False  # subscribed: only then may entries be kept
        self.hits = 0
        self.misses = 0

    def cached(self, cid: str, now: int) -> ConnectionTarget | None:
        """The target when this process holds a live entry for it (nothing awaited), else None."""
        entry = self._entries.get(cid)
        if entry is None or entry.expires_at <= time.monotonic():
            return None
        self.hits += 1
        if now >= entry.changes_at_ms:
            entry.target, entry.changes_at_ms = target_from(cid, entry.stored, now), float("inf")
        return entry.target

    async def get(self, cid: str, now: int) -> tuple[ConnectionTarget | None, bool]:
        """The target, and whether it came from the cache (then a mismatch deserves a fresh read)."""
        target = self.cached(cid, now)
        if target is not None:
            return target, True
        self.misses += 1
        return await self.reload(cid, now), False

    async def reload(self, cid: str, now: int) -> ConnectionTarget | None:
        """Read the target from Redis, and keep it unless a change raced with the read."""
        token, generation = object(), self._generation
        self._reading.setdefault(cid, set()).add(token)
        try:
            stored = await self.reads.get(cid)
        finally:
            readers = self._reading.get(cid)
            unchanged = readers is not None and token in readers
            if unchanged and readers is not None:
                readers.discard(token)
                if not readers:
                    del self._reading[cid]
        if stored is None:
            self._entries.pop(cid, None)
            return None
        target = target_from(cid, stored, now)
        if self.live and unchanged and generation == self._generation:
            self._keep(cid, stored, target)
        return target

    def _keep(self, cid: str, stored: Credentials, target: ConnectionTarget) -> None:
        window_ends = float(stored.prev_secret_until_ms) if target.previous_secret else 0.0
        changes_at = window_ends or float("inf")
        # A spread of TTLs, so entries read together (a burst, a restart) do not all expire together.
        ttl = self.ttl_s * random.uniform(0.75, 1.0)
        self._entries[cid] = _Entry(stored, target, changes_at, time.monotonic() + ttl)
        self._entries.move_to_end(cid)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def on_change(self, data: bytes | str) -> None:
        """One message of the ``changes`` channel: evict when the change may matter to us."""
        try:
            note = orjson.loads(data)
            cid, state = str(note["id"]), str(note.get("state") or "")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.clear()  # not understood: assume the worst
            return
        self._reading.pop(cid, None)  # reads in flight may have seen it before or after: keep none
        entry = self._entries.get(cid)
        if entry is not None and (state != entry.state or state in ("pending", "failed", "disconnected")
                                  or "test" in note):
            del self._entries[cid]

    def clear(self) -> None:
        self._entries.clear()
        self._reading.clear()
        self._generation += 1

    async def run(self, subscribed: asyncio.Event | None = None) -> None:
        """Stay subscribed to the changes channel; on any Redis error, stop caching, retry, start empty."""

        def on_subscribed() -> None:
            self.clear()
            self.live = True
            if subscribed is not None:
                subscribed.set()

        def on_lost() -> None:
            self.live = False
            self.clear()

        await follow_changes(self.store.redis, self.store.keys.changes, self.on_change,
                             on_subscribed=on_subscribed, on_lost=on_lost, follower="receiver cache")
