"""The delivery message (receiver -> verifier), the connection states, ids and timestamps.

The delivery message is versioned JSON. It never carries a body or a secret: a verified delivery
carries the provider's event id and type, a rejected one its reason code and message, a ``reachable``
one (a handshake that proves nothing about the secret) only that the URL was reached. The stored
connection is ``shared/records.py``; what people are shown of it, ``services/status_api/presentation.py``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from dataclasses import dataclass
from typing import Literal

import orjson

from shared.errors import PoisonMessage

MESSAGE_VERSION = 1
Outcome = Literal["verified", "rejected", "reachable"]
OUTCOMES: tuple[Outcome, ...] = ("verified", "rejected", "reachable")
State = Literal["pending", "connected", "failed", "disconnected"]
STATES: tuple[State, ...] = ("pending", "connected", "failed", "disconnected")
# A connected connection shows ``failing`` only after this many rejected deliveries in a row, with no
# verified one between them: a stranger who forges one request per real event never flips the badge.
FAILING_AFTER_REJECTED = 3


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@functools.lru_cache(maxsize=4096)
def _iso_seconds(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def iso(ms: int | str | None) -> str | None:
    """Milliseconds since the epoch as ISO 8601 UTC (``2026-11-27T16:30:00.123Z``).

    Integer arithmetic (exact, unlike a float division) and a cache of the seconds part: every status
    object carries several timestamps, and formatting them was ~7% of the status API's CPU."""
    if ms is None or ms == "":
        return None
    whole = int(ms)
    return f"{_iso_seconds(whole // 1000)}.{whole % 1000:03d}Z"


def new_id() -> str:
    """Unguessable ids: 128 random bits, as 32 hex digits."""
    return os.urandom(16).hex()


# Not frozen: a frozen dataclass sets each field through ``object.__setattr__``, and one of these is
# built for every webhook (receiver) and read back for every delivery (verifier): 5x the time.
@dataclass(slots=True)
class DeliveryMessage:
    delivery_id: str
    connection_id: str
    provider: str
    received_at_ms: int
    outcome: Outcome
    reason: str | None = None
    message: str | None = None
    event_id: str | None = None
    event_type: str | None = None
    is_test: bool = False
    handshake: bool = False
    secret_slot: str | None = None
    # A fingerprint of the signed content, when ``event_id`` is not covered by the signature.
    fingerprint: str | None = None
    # When the receiver had verified (or rejected) it; a test window's hop (None from older receivers).
    checked_at_ms: int | None = None
    # A held request that a fix of the secret or settings verified: the id of its rejected delivery.
    recovered_from: str | None = None
    # A rejection because the request verifies with another connection's secret: that connection.
    other_connection_id: str | None = None
    v: int = MESSAGE_VERSION

    def to_bytes(self) -> bytes:
        return orjson.dumps(self)  # orjson writes a dataclass's fields itself (no asdict copy)

    @classmethod
    def from_bytes(cls, body: bytes) -> DeliveryMessage:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise PoisonMessage("not_json", "the message body is not JSON") from exc
        if not isinstance(data, dict):
            raise PoisonMessage("bad_shape", "the message is not a JSON object")
        if data.get("v") != MESSAGE_VERSION:
            raise PoisonMessage("unknown_version", f"unknown message version {data.get('v')!r}")
        # Earlier receivers sent a handshake's learnt secret along; receivers now store it themselves.
        data.pop("learnt_secret", None)
        try:
            msg = cls(**data)
        except TypeError as exc:
            raise PoisonMessage("bad_shape", "the message has missing or unknown fields") from exc
        if msg.outcome not in OUTCOMES or not msg.delivery_id or not msg.connection_id:
            raise PoisonMessage("bad_shape", "the message has an invalid outcome or ids")
        return msg

    def list_entry(self) -> bytes:
        """What the deliveries list keeps: never a body or a secret."""
        extra: dict[str, object] = {}
        if self.recovered_from:
            extra.update(recovered=True, recovered_from=self.recovered_from)
        if self.other_connection_id:
            extra["other_connection_id"] = self.other_connection_id
        return orjson.dumps(
            {
                "id": self.delivery_id,
                "at": iso(self.received_at_ms),
                "outcome": self.outcome,
                "reason": self.reason,
                "message": self.message,
                "event_id": self.event_id,
                "event_type": self.event_type,
                "is_test": self.is_test,
                "handshake": self.handshake,
                **extra,
            }
        )

MAX_EVENT_ID_CHARS = 200


def bounded_event_id(event_id: str | None) -> str | None:
    """An event id of at most ``MAX_EVENT_ID_CHARS`` (it becomes a Redis key): a longer one (an unsigned
    header can hold anything) is replaced by its digest."""
    if event_id is None or len(event_id) <= MAX_EVENT_ID_CHARS:
        return event_id
    return "sha256:" + hashlib.sha256(event_id.encode()).hexdigest()
