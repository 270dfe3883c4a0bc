"""The stored connection, typed: one Redis hash (``Keys.conn``) parsed once, where the store reads it.

The hash's field names appear here (and in the Lua scripts that write them), nowhere else: the rest of
the code reads attributes. Times are milliseconds since the epoch (``*_ms``); 0 or None when unset.

    ConnectionRecord   the whole hash (the status API, the stream, the analytics, the verifier)
    TestWindow         its ``test_*`` fields, or an archived window (same fields, ``Keys.tests``)
    Credentials        the few fields the receiver verifies a request with (one HMGET, cached)
    LastError          the latest rejected delivery (``last_error``, JSON)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import orjson

from shared.models import State

Hash = Mapping[str, str]
SHOWN_KEPT = 4096  # records of hashes read only to be shown, kept by connection id (``from_hash``)
SEALED = "(sealed)"  # a sealed field of a hash read only to be shown (``shared.store.SEALED``)


def _int(value: str | None) -> int:
    return int(value) if value else 0


def _json(value: str | None) -> Any:
    return orjson.loads(value) if value else None


@dataclass(frozen=True, slots=True)
class LastError:
    code: str | None
    message: str | None
    at_ms: int

    @classmethod
    def from_json(cls, value: str | None) -> LastError | None:
        data = _json(value)
        if not data:
            return None
        return cls(data.get("code"), data.get("message"), int(data.get("at") or 0))


@dataclass(frozen=True, slots=True)
class TestWindow:
    """One test event window: ``waiting`` until a verified event passes it or the sweep fails it."""

    __test__: ClassVar[bool] = False  # not a pytest test class, whatever its name

    FIELDS: ClassVar[tuple[str, ...]] = ("test_id", "test_state", "test_reason", "test_seen", "test_started_at",
                                         "test_expires_at", "test_finished_at", "test_hops")

    id: str
    state: str  # waiting | passed | failed
    reason: str | None
    seen: dict[str, int]  # rejection reason code -> count, while the window was open
    started_at_ms: int
    expires_at_ms: int
    finished_at_ms: int
    # When the delivery the window follows reached each hop (docs/API.md, "Test events"): its
    # ``delivery_id``, ``outcome``, ``reason`` and hop name -> ms (received, checked, queued, consumed,
    # stored, pushed); empty while nothing reached the receiver.
    hops: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, raw: Hash) -> TestWindow | None:
        """From the connection hash (or an archived record with the same field names)."""
        if not raw.get("test_id"):
            return None
        return cls(
            id=raw["test_id"],
            state=raw.get("test_state") or "waiting",
            reason=raw.get("test_reason") or None,
            seen=_json(raw.get("test_seen")) or {},
            started_at_ms=_int(raw.get("test_started_at")),
            expires_at_ms=_int(raw.get("test_expires_at")),
            finished_at_ms=_int(raw.get("test_finished_at")),
            hops=_json(raw.get("test_hops")) or {},
        )

    @classmethod
    def from_values(cls, values: Sequence[str | None]) -> TestWindow | None:
        """From an HMGET of ``FIELDS``."""
        return cls.from_hash({name: value for name, value in zip(cls.FIELDS, values, strict=True) if value})


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    id: str
    account_id: str
    provider: str
    state: State
    webhook_url: str
    version: int
    reason: str | None = None
    secret: str = field(default="", repr=False)
    settings: dict[str, Any] = field(default_factory=dict)
    timeout_s: int = 0
    expected_interval_s: int = 0  # 0: no expectation (never "silent")
    created_at_ms: int = 0
    updated_at_ms: int = 0
    pending_deadline_ms: int = 0
    connected_at_ms: int = 0
    failed_at_ms: int = 0
    failed_detail: str | None = None  # the most frequent rejection before the deadline
    last_event_at_ms: int = 0
    reachable_at_ms: int = 0  # a handshake reached the URL (it proves nothing about the secret)
    secret_learnt_at_ms: int = 0  # a handshake set the signing secret
    last_verified_slot: str | None = None  # current | previous
    last_error: LastError | None = None
    events_received: int = 0
    rejected_total: int = 0
    rejected_since_event: int = 0  # rejected deliveries in a row, since the last verified one
    seen: dict[str, int] = field(default_factory=dict)  # rejection reason code -> count, while pending
    prev_secret: str | None = field(default=None, repr=False)
    prev_secret_until_ms: int = 0
    prev_secret_used_at_ms: int = 0
    test: TestWindow | None = None  # the latest test window
    # The learned rhythm of verified events (shared/rhythm.py): gaps learned, their weighted mean and
    # variance, and the gap beyond which the connection is silent (0 until learned).
    gap_count: int = 0
    gap_mean_ms: float = 0.0
    gap_var_ms2: float = 0.0
    quiet_after_ms: int = 0

    @property
    def quiet_limit_ms(self) -> int:
        """The gap after which a connected connection is silent: the shorter of its expected interval
        and its learned limit; 0 when it has neither (never silent)."""
        limits = [limit for limit in (self.expected_interval_s * 1000, self.quiet_after_ms) if limit > 0]
        return min(limits, default=0)

    @classmethod
    def from_hash(cls, raw: Hash) -> ConnectionRecord:
        """The record of ``raw``. A hash without its sealed fields (read only to be shown: a status page
        polls the same connection over and over) read a second time lately is kept (``SHOWN_KEPT``
        connections, by id, the oldest dropped first), and gives the same record object as long as it is
        exactly the same, field for field: comparing the fields costs a fraction of parsing them, and
        a view of it can be kept with it (``presentation.shown``). Only what is read again is kept, so
        reads spread over many connections pay next to nothing for it. A hash with a secret or settings
        is never kept."""
        if "secret" in raw or "settings" in raw or raw.get("prev_secret", SEALED) != SEALED:
            return cls._parse(raw)
        cid = raw["id"]
        kept = _SHOWN.get(cid)
        if kept is not None and kept[0] == raw:
            return kept[1]
        record = cls._parse(raw)
        if kept is None and _READ_ONCE.pop(cid, True):  # the first read lately: remembered, not kept
            _READ_ONCE[cid] = False
            if len(_READ_ONCE) > SHOWN_KEPT:
                _READ_ONCE.popitem(last=False)
            return record
        _SHOWN[cid] = (dict(raw), record)  # a copy: the caller's may change
        if len(_SHOWN) > SHOWN_KEPT:
            _SHOWN.popitem(last=False)  # the oldest kept
        return record

    def is_kept(self) -> bool:
        """This very record is the one ``from_hash`` keeps for its connection."""
        kept = _SHOWN.get(self.id)
        return kept is not None and kept[1] is self

    @classmethod
    def _parse(cls, raw: Hash) -> ConnectionRecord:
        return cls(
            id=raw["id"],
            account_id=raw.get("account_id", ""),
            provider=raw.get("provider", ""),
            state=cast(State, raw["state"]),  # written only by the scripts: one of STATES
            webhook_url=raw.get("webhook_url", ""),
            version=_int(raw.get("version")),
            reason=raw.get("reason") or None,
            secret=raw.get("secret", ""),
            settings=_json(raw.get("settings")) or {},
            timeout_s=_int(raw.get("timeout_s")),
            expected_interval_s=_int(raw.get("expected_interval_s")),
            created_at_ms=_int(raw.get("created_at")),
            updated_at_ms=_int(raw.get("updated_at")),
            pending_deadline_ms=_int(raw.get("pending_deadline")),
            connected_at_ms=_int(raw.get("connected_at")),
            failed_at_ms=_int(raw.get("failed_at")),
            failed_detail=raw.get("failed_detail") or None,
            last_event_at_ms=_int(raw.get("last_event_at")),
            reachable_at_ms=_int(raw.get("reachable_at")),
            secret_learnt_at_ms=_int(raw.get("secret_learnt_at")),
            last_verified_slot=raw.get("last_verified_slot") or None,
            last_error=LastError.from_json(raw.get("last_error")),
            events_received=_int(raw.get("events_received")),
            rejected_total=_int(raw.get("rejected_total")),
            rejected_since_event=_int(raw.get("rejected_since_event")),
            seen=_json(raw.get("seen")) or {},
            prev_secret=raw.get("prev_secret") or None,
            prev_secret_until_ms=_int(raw.get("prev_secret_until")),
            prev_secret_used_at_ms=_int(raw.get("prev_secret_used_at")),
            test=TestWindow.from_hash(raw),
            gap_count=_int(raw.get("gap_count")),
            gap_mean_ms=float(raw.get("gap_mean_ms") or 0),
            gap_var_ms2=float(raw.get("gap_var_ms2") or 0),
            quiet_after_ms=_int(raw.get("quiet_after_ms")),
        )

    def to_hash(self) -> dict[str, str | int]:
        """The fields a new connection is stored with (the scripts write the others as it changes)."""
        fields: dict[str, str | int] = {
            "id": self.id,
            "account_id": self.account_id,
            "provider": self.provider,
            "state": self.state,
            "reason": self.reason or "",
            "secret": self.secret,
            "settings": orjson.dumps(self.settings).decode(),
            "webhook_url": self.webhook_url,
            "pending_deadline": self.pending_deadline_ms,
            "timeout_s": self.timeout_s,
            "created_at": self.created_at_ms,
            "updated_at": self.updated_at_ms,
            "events_received": self.events_received,
            "version": self.version,
            "seen": orjson.dumps(self.seen).decode(),
        }
        if self.expected_interval_s:
            fields["expected_interval_s"] = self.expected_interval_s
        return fields


_SHOWN: OrderedDict[str, tuple[dict[str, str], ConnectionRecord]] = OrderedDict()
_READ_ONCE: OrderedDict[str, bool] = OrderedDict()  # connections read once lately (``from_hash``)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the receiver needs to verify a request for a connection (``FIELDS``, one HMGET)."""

    FIELDS: ClassVar[tuple[str, ...]] = ("provider", "state", "secret", "prev_secret", "prev_secret_until",
                                         "settings", "webhook_url", "test_state")

    provider: str
    state: str
    webhook_url: str
    secret: str = field(repr=False)
    prev_secret: str | None = field(repr=False)
    prev_secret_until_ms: int
    settings: dict[str, Any]
    testing: bool = False  # a test window is open: the receiver records its hops (docs/API.md)

    @classmethod
    def from_values(cls, values: Sequence[str | None]) -> Credentials | None:
        """From an HMGET of ``FIELDS``; None when the connection does not exist."""
        provider, state, secret, prev, prev_until, settings, url = values[:7]
        if provider is None or state is None:
            return None
        return cls(provider=provider, state=state, webhook_url=url or "", secret=secret or "",
                   prev_secret=prev or None, prev_secret_until_ms=_int(prev_until), settings=_json(settings) or {},
                   testing=len(values) > 7 and values[7] == "waiting")
