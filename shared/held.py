"""Held deliveries: rejected requests kept, sealed, so that a fix of the connection verifies them again.

A connection set up with the wrong secret rejects every delivery the provider sends; once the person
reconnects with the right secret, the provider would have to send them again. Instead the receiver
*holds* each rejected request it can attribute to a connection (method, query, headers, body, receipt
time), sealed with ``SECRETS_KEYS`` (``shared/crypto.py``, the held id and connection as associated
data), and ``reverify`` checks them again after a reconnect with a new secret or settings, or on
``POST /v1/connections/{id}/reverify``.

Bounds (``HeldLimits``): per connection at most ``per_connection`` requests and ``per_connection_bytes``
bytes, in total ``total_bytes``, each for at most ``max_age_s``; the oldest go first, and every drop is
counted (``hookstatus_held_dropped_total``). The keys are the connection's (``held``, ``held:data``,
``held:meta``, under its hash tag, so a purge erases them) plus one total index and its byte counter.

What may be shown of a held request is its id (the rejected delivery's), receipt time, reason, size and
other connection (``held:meta``); never its body or headers, which are only ever opened to verify.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from multidict import CIMultiDict
from yarl import URL

from shared import lua, metrics
from shared.crypto import SecretUnreadable
from shared.errors import ConfigError, VerificationError
from shared.models import DeliveryMessage, bounded_event_id, iso
from shared.providers import PROVIDERS
from shared.providers.base import InboundRequest
from shared.providers.rotation import verify_with_rotation
from shared.redis import awaited
from shared.store import DEDUPE_TTL_S, Store

log = logging.getLogger(__name__)
# Headers never kept: they say nothing a signature scheme reads, and may carry a browser's session.
NOT_KEPT_HEADERS = frozenset({"cookie", "connection", "keep-alive", "transfer-encoding", "upgrade"})
TRIM_BATCH = 50
# A held request is verified again, and its recovered delivery published, within HELD_MAX_AGE_S of its
# arrival; the verifier remembers delivery and event ids this long, so none is ever applied twice.
MAX_HELD_AGE_S = DEDUPE_TTL_S


def check_max_age(max_age_s: int) -> None:
    if max_age_s > MAX_HELD_AGE_S:
        raise ConfigError(f"HELD_MAX_AGE_S may be at most {MAX_HELD_AGE_S} (the time delivery and event ids "
                          "are remembered): a request held longer could be applied twice")


@dataclass(frozen=True, slots=True)
class HeldLimits:
    per_connection: int
    per_connection_bytes: int
    total_bytes: int
    max_age_s: int

    @property
    def enabled(self) -> bool:
        return min(self.per_connection, self.per_connection_bytes, self.total_bytes, self.max_age_s) > 0

    @property
    def max_age_ms(self) -> int:
        return self.max_age_s * 1000


@dataclass(frozen=True, slots=True)
class HeldRequest:
    """One held request, opened (only to verify it again)."""

    id: str
    received_at_ms: int
    reason: str
    method: str
    query: str
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    body: bytes = field(repr=False)
    stored: int = 0  # bytes Redis holds for it (sealed): what the bounds count

    @property
    def size(self) -> int:
        return len(self.body) + len(self.query) + sum(len(k) + len(v) for k, v in self.headers)

    def inbound(self, webhook_url: str) -> InboundRequest:
        url = webhook_url + (f"?{self.query}" if self.query else "")
        return InboundRequest(self.method, url, CIMultiDict(self.headers), URL(url).query, self.body)

    def sealed_payload(self) -> str:
        return orjson.dumps({"m": self.method, "q": self.query, "h": self.headers,
                             "b": base64.b64encode(self.body).decode()}).decode()


def held_request(hid: str, at: int, reason: str, method: str, query: str, headers: Mapping[str, str],
                 body: bytes) -> HeldRequest:
    """A request to hold, with only the headers worth keeping. A header's bytes that are not UTF-8
    (legal in HTTP; the server hands them over as lone surrogates, which cannot be sealed as JSON) are
    replaced: no signature scheme reads such a header, and the request can still verify later."""
    kept = tuple((_utf8(k), _utf8(v)) for k, v in headers.items() if k.lower() not in NOT_KEPT_HEADERS)
    return HeldRequest(hid, at, reason, method, query, kept, body)


def _utf8(text: str) -> str:
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


def recovered_delivery_id(hid: str) -> str:
    """The delivery id of a held request once verified: fixed, so publishing it twice applies it once."""
    return hashlib.sha256(f"recovered:{hid}".encode()).hexdigest()[:32]


def _stored(shown: Mapping[str, Any] | None) -> int:
    """The bytes counted for a held request (``size`` for one held before they were counted stored)."""
    if shown is None:
        return 0
    return int(shown.get("stored", shown["size"]))


def _context(cid: str, hid: str) -> str:
    return f"{cid}:held:{hid}"


class HeldStore:
    """The held requests of every connection, over the connection store's client, keys and sealer."""

    def __init__(self, store: Store, limits: HeldLimits) -> None:
        self.store = store
        self.redis = store.redis
        self.keys = store.keys
        self.limits = limits

    def _conn_keys(self, cid: str) -> list[str]:
        return [self.keys.held(cid), self.keys.held_data(cid), self.keys.held_meta(cid)]

    async def hold(self, cid: str, request: HeldRequest, other_connection_id: str | None = None) -> bool:
        """Hold ``request`` within the bounds (dropping the oldest); False when it is too large to hold.
        The bounds count the bytes stored (the sealed request and what may be shown of it), not the
        request: sealing makes it nearly twice as large (base64 twice, the GCM tag)."""
        limits = self.limits
        if not limits.enabled:
            return False
        sealed = self.store.sealer.seal(request.sealed_payload(), _context(cid, request.id))
        shown: dict[str, object] = {"received_at": request.received_at_ms, "reason": request.reason,
                                    "size": request.size}
        if other_connection_id:
            shown["other_connection_id"] = other_connection_id
        size = len(sealed) + len(orjson.dumps(shown)) + 32  # the stored count itself, and the id twice
        shown["stored"] = size
        args: lua.Args = [request.id, request.received_at_ms, sealed, orjson.dumps(shown), size,
                          limits.per_connection, limits.per_connection_bytes, limits.max_age_ms]

        async def op() -> bool:
            reply = await lua.run(self.store.scripts.hold_request, self._conn_keys(cid), args)
            held, dropped = bool(int(reply[0])), reply[1:]
            if held:
                await awaited(self.redis.zadd(self.keys.held_index,
                                              {f"{cid}:{request.id}:{size}": request.received_at_ms}))
                await awaited(self.redis.incrby(self.keys.held_bytes, size))
                metrics.HELD_REQUESTS.inc()
            for i in range(0, len(dropped), 3):
                hid, n, why = str(dropped[i]), int(dropped[i + 1]), str(dropped[i + 2])
                metrics.HELD_DROPPED.labels(why).inc()
                if why != "too_large":
                    await self._unindex(f"{cid}:{hid}:{n}")
            await self._trim(request.received_at_ms)
            return held

        return await self.store._call(op)

    async def _unindex(self, member: str) -> bool:
        """Drop one member of the total index (and its bytes), once even when two processes race."""
        if not await awaited(self.redis.zrem(self.keys.held_index, member)):
            return False
        await awaited(self.redis.decrby(self.keys.held_bytes, int(member.rsplit(":", 1)[1])))
        return True

    async def _drop(self, cid: str, hid: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self.keys.held(cid), hid)
            pipe.hdel(self.keys.held_data(cid), hid)
            pipe.hdel(self.keys.held_meta(cid), hid)
            await pipe.execute()

    async def _trim(self, now: int) -> None:
        """The total bounds: what is past the longest held time, then the oldest over the total bytes."""
        k = self.keys
        expired = await awaited(self.redis.zrangebyscore(k.held_index, "-inf", now - self.limits.max_age_ms,
                                                         start=0, num=TRIM_BATCH))
        for member in expired:
            if await self._unindex(member):
                metrics.HELD_DROPPED.labels("expired").inc()
                cid, hid, _ = str(member).split(":")
                await self._drop(cid, hid)
        while int(await awaited(self.redis.get(k.held_bytes)) or 0) > self.limits.total_bytes:
            popped = await awaited(self.redis.zpopmin(k.held_index, 1))
            if not popped:  # the counter is off (a crash between two commands): nothing is held
                await awaited(self.redis.set(k.held_bytes, 0))
                break
            [(member, _)] = popped
            cid, hid, size = str(member).split(":")
            await awaited(self.redis.decrby(k.held_bytes, int(size)))
            await self._drop(cid, hid)
            metrics.HELD_DROPPED.labels("total_limit").inc()

    async def listing(self, cid: str, now: int) -> list[dict[str, Any]]:
        """What may be shown of the connection's held requests, oldest first: never a body."""
        raw = await self.store._call(lambda: awaited(self.redis.hgetall(self.keys.held_meta(cid))))
        oldest = now - self.limits.max_age_ms
        out = []
        for hid, shown in raw.items():
            data = orjson.loads(shown)
            if int(data["received_at"]) <= oldest:
                continue
            out.append({"id": str(hid), "received_at": iso(int(data["received_at"])), "reason": data["reason"],
                        "size": int(data["size"]), "event_id": data.get("event_id"),
                        "other_connection_id": data.get("other_connection_id"), "_at": int(data["received_at"])})
        out.sort(key=lambda item: (item["_at"], item["id"]))
        for item in out:
            del item["_at"]
        return out

    async def requests(self, cid: str, now: int) -> list[HeldRequest]:
        """The connection's held requests, opened, oldest first; one past its time, or that no key of
        ``SECRETS_KEYS`` opens any more, is dropped."""
        async def op() -> tuple[dict[str, str], dict[str, str]]:
            data = await awaited(self.redis.hgetall(self.keys.held_data(cid)))
            meta = await awaited(self.redis.hgetall(self.keys.held_meta(cid)))
            return data, meta

        data, meta = await self.store._call(op)
        out: list[HeldRequest] = []
        for hid, sealed in data.items():
            shown = orjson.loads(meta[hid]) if hid in meta else None
            stored = _stored(shown)
            if shown is None or int(shown["received_at"]) <= now - self.limits.max_age_ms:
                await self.remove(cid, str(hid), stored, why="expired")
                continue
            try:
                payload = orjson.loads(self.store.sealer.open(sealed, _context(cid, hid)))
            except (SecretUnreadable, orjson.JSONDecodeError):
                await self.remove(cid, str(hid), stored, why="unreadable")
                continue
            out.append(HeldRequest(str(hid), int(shown["received_at"]), str(shown["reason"]), payload["m"],
                                   payload["q"], tuple((str(k), str(v)) for k, v in payload["h"]),
                                   base64.b64decode(payload["b"]), stored))
        out.sort(key=lambda r: (r.received_at_ms, r.id))
        return out

    async def remove(self, cid: str, hid: str, size: int, why: str | None = None) -> None:
        """Drop one held request (verified at last, or dropped ``why``); ``size``: its stored bytes."""
        async def op() -> None:
            await self._drop(cid, hid)
            if await self._unindex(f"{cid}:{hid}:{size}") and why:
                metrics.HELD_DROPPED.labels(why).inc()

        await self.store._call(op)


@dataclass(frozen=True, slots=True)
class ReverifyResult:
    checked: int = 0
    recovered: int = 0
    still_rejected: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"checked": self.checked, "recovered": self.recovered, "still_rejected": self.still_rejected}


Publish = Callable[[DeliveryMessage], Awaitable[None]]


async def reverify(held: HeldStore, cid: str, publish: Publish, now: int) -> ReverifyResult:
    """Verify the connection's held requests again, with its secrets and settings as stored now, each
    judged at its own receipt time. One that verifies is published (confirmed) as a verified delivery
    marked ``recovered_from`` and then dropped; the verifier applies it like any other (deduplicated by
    event id). One that still fails stays held. A handshake is never replayed."""
    stored = await held.store.get_credentials(cid)
    provider = PROVIDERS.get(stored.provider) if stored is not None else None
    if stored is None or provider is None or stored.state == "disconnected":
        return ReverifyResult()
    previous = stored.prev_secret if stored.prev_secret and stored.prev_secret_until_ms > now else None
    checked = recovered = 0
    for request in await held.requests(cid, now):
        checked += 1
        try:
            verified = verify_with_rotation(provider, request.inbound(stored.webhook_url), (stored.secret, previous),
                                            stored.settings, request.received_at_ms / 1000, diagnosis=False)
        except VerificationError:
            metrics.REVERIFIED.labels("still_rejected").inc()
            continue
        except Exception as exc:  # noqa: BLE001 - one request an adapter cannot read must not stop the others
            # The error's type only: its text could quote the held body.
            log.warning("a held delivery could not be verified again", extra={
                "connection_id": cid, "delivery_id": request.id, "provider": stored.provider,
                "error": type(exc).__name__})
            metrics.REVERIFIED.labels("still_rejected").inc()
            continue
        if verified.handshake or verified.reachable_only or verified.learnt_secret is not None:
            continue
        await publish(DeliveryMessage(
            delivery_id=recovered_delivery_id(request.id), connection_id=cid, provider=stored.provider,
            received_at_ms=now, outcome="verified", event_id=bounded_event_id(verified.event_id),
            fingerprint=verified.fingerprint, event_type=verified.event_type, is_test=verified.is_test,
            secret_slot=verified.secret_slot, recovered_from=request.id,
        ))
        await held.remove(cid, request.id, request.stored)
        metrics.REVERIFIED.labels("recovered").inc()
        recovered += 1
        log.info("held delivery recovered", extra={"connection_id": cid, "delivery_id": request.id})
    return ReverifyResult(checked, recovered, checked - recovered)
