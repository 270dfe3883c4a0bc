"""The delivery message (receiver -> verifier) and the public status object (status API -> people).

The delivery message is versioned JSON. It never carries a body or a secret: a verified delivery
carries the provider's event id and type, a rejected one its reason code and message, a ``reachable``
one (a handshake that proves nothing about the secret) only that the URL was reached.
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from shared.errors import PoisonMessage

MESSAGE_VERSION = 1
Outcome = Literal["verified", "rejected", "reachable"]
OUTCOMES: tuple[Outcome, ...] = ("verified", "rejected", "reachable")
State = Literal["pending", "connected", "failed", "disconnected"]
STATES: tuple[State, ...] = ("pending", "connected", "failed", "disconnected")


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


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
    """Unguessable ids: 128 random bits."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
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
    v: int = MESSAGE_VERSION

    def to_bytes(self) -> bytes:
        return orjson.dumps(asdict(self))

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
            }
        )


# --- the connect button --------------------------------------------------------------------------

REASON_WORDS: dict[str, str] = {
    "awaiting_first_event": "Waiting for the first signed event from the provider.",
    "verified_event": "A signed event arrived and verified.",
    "handshake_completed": "The provider completed its registration handshake.",
    "deadline_no_events": "Nothing arrived from the provider before the deadline. Check that the webhook "
    "URL is pasted in the provider's dashboard and that the endpoint is enabled.",
    "deadline_bad_signatures": "Events arrived, but their signatures do not match your signing secret. "
    "Copy the signing secret from the provider again and reconnect.",
    "deadline_stale_timestamps": "Events arrived, but their timestamps were out of tolerance: they were "
    "replays or the sender's clock is wrong.",
    "deadline_rejected_deliveries": "Events arrived, but none of them verified. See the recent deliveries "
    "for why.",
    "disconnected_by_user": "Disconnected.",
    # Why one delivery was rejected (a delivery's ``reason``; a failed connection's ``failed_detail``).
    "missing_header": "Deliveries arrive without the provider's signature header: check that the provider "
    "signs its webhooks and that no proxy strips headers.",
    "malformed_signature": "Deliveries carry a signature header we cannot read: check the provider chosen "
    "for this connection.",
    "malformed_timestamp": "Deliveries carry a timestamp header that is not a Unix timestamp.",
    "signature_mismatch": "Deliveries are signed with a secret that is not this connection's: copy the "
    "signing secret from the provider again and reconnect with it.",
    "timestamp_too_old": "Deliveries are signed too long ago: they are replays, or the sender's clock is "
    "behind ours.",
    "timestamp_too_new": "Deliveries are signed in the future: the sender's clock is ahead of ours.",
    "previous_secret": "Deliveries are signed with the secret you replaced: update the secret in the "
    "provider's dashboard.",
    "secret_format": "Deliveries verify only with your secret in another format (whsec_ prefix, hex or "
    "base64): reconnect with the secret exactly as the provider shows it.",
    "wrong_provider": "Deliveries come from a different provider than this connection is set up for: "
    "create a connection for that provider.",
    "secret_not_set": "Deliveries arrive, but no signing secret is set yet: reconnect with the secret the "
    "provider shows.",
    "verify_token_mismatch": "The provider's verify token does not match the connection's settings.",
    "malformed_handshake": "The provider's handshake request was incomplete.",
    "invalid_handshake_token": "A handshake carried a token unlike the provider's: it was refused.",
    "secret_already_learnt": "A second handshake tried to set the signing secret; the first one's secret "
    "is kept. To register a new webhook, reconnect and let the provider's handshake set it again.",
}


TEST_REASON_WORDS: dict[str, str] = {
    "test_waiting": "Waiting for a test event: send one from the provider (see the instructions).",
    "test_event_verified": "A signed test event arrived and verified: the connection works.",
    "test_handshake_completed": "The provider completed its handshake: the connection works.",
    "test_no_events": "No event arrived during the test. Send the test event from the provider's dashboard "
    "and check that the webhook URL is pasted there.",
    "test_bad_signatures": "Events arrived during the test, but their signatures do not match your signing "
    "secret. Copy the signing secret from the provider again and reconnect.",
    "test_stale_timestamps": "Events arrived during the test, but their timestamps were out of tolerance: "
    "they were replays or the sender's clock is wrong.",
    "test_rejected_deliveries": "Events arrived during the test, but none of them verified. See the recent "
    "deliveries for why.",
    "test_superseded": "A newer test replaced this one before it finished.",
}
# A connected connection shows ``failing`` only after this many rejected deliveries in a row, with no
# verified one between them: a stranger who forges one request per real event never flips the badge.
FAILING_AFTER_REJECTED = 3
SILENT_WORDS = "No event has arrived for longer than this connection expects. Check the provider's side."
FAILING_WORDS = "Recent deliveries were rejected. See the recent deliveries for why."


def cta_for(
    state: str, health: str | None = None, test_state: str | None = None, reason: str | None = None
) -> dict[str, Any]:
    """The connect button: a label, an action and a secondary button the UI shows as is, plus ``hint``,
    the state's reason in plain words (or null). The table is in docs/API.md."""
    if state != "disconnected" and test_state == "waiting":
        return _cta("Testing…", None, None, None, TEST_REASON_WORDS["test_waiting"])
    if state == "pending":
        return _cta("Waiting for first event…", "send_test", "Send test event", "send_test",
                    REASON_WORDS["awaiting_first_event"])
    if state == "connected":
        if health == "failing":
            return _cta("Fix signing secret", "reconnect", "Send test event", "send_test", FAILING_WORDS)
        if health == "silent":
            return _cta("Connected", "reconnect", "Send test event", "send_test", SILENT_WORDS)
        return _cta("Connected", "reconnect", "Reconnect", "reconnect", None)
    if state == "failed":
        why = reason if reason and reason.startswith("deadline_") else "deadline_no_events"
        return _cta("Reconnect", "reconnect", "Send test event", "send_test", REASON_WORDS.get(why))
    return _cta("Connect", "connect", None, None, None)


def _cta(label: str, action: str | None, secondary: str | None, secondary_action: str | None,
         hint: str | None) -> dict[str, Any]:
    return {"label": label, "action": action, "secondary": secondary, "secondary_action": secondary_action,
            "hint": hint}


def display_of(raw: dict[str, str], health: str | None, now: int) -> str:
    """One word a UI can style without logic: connected, pending, failing, silent, failed, disconnected."""
    state = raw["state"]
    if state == "connected" and health in ("failing", "silent"):
        return health
    if state == "pending" and int(raw.get("pending_deadline") or 0) <= now:
        return "failed"  # the sweep has not run yet; the deadline has passed all the same
    return state


def view_of_test(raw: dict[str, str]) -> dict[str, Any] | None:
    """A test event window, from the connection hash (or an archived record with the same fields)."""
    if not raw.get("test_id"):
        return None
    state = raw.get("test_state") or "waiting"
    reason = raw.get("test_reason") or ("test_waiting" if state == "waiting" else None)
    return {
        "id": raw["test_id"],
        "state": state,
        "reason": reason if state != "waiting" else None,
        "reason_message": TEST_REASON_WORDS.get(reason or ""),
        "seen": _json_field(raw.get("test_seen")) or {},
        "started_at": iso(raw.get("test_started_at")),
        "expires_at": iso(raw.get("test_expires_at")),
        "finished_at": iso(raw.get("test_finished_at")),
    }


def _json_field(raw: str | None) -> Any:
    return orjson.loads(raw) if raw else None


def health_of(raw: dict[str, str], now: int) -> str | None:
    """For a connected connection: ``ok``, ``failing`` (at least ``FAILING_AFTER_REJECTED`` deliveries
    rejected since the last verified one) or ``silent``."""
    if raw.get("state") != "connected":
        return None
    last_event = int(raw.get("last_event_at") or 0)
    if int(raw.get("rejected_since_event") or 0) >= FAILING_AFTER_REJECTED:
        return "failing"
    expected = int(raw.get("expected_interval_s") or 0)
    if expected and last_event and now - last_event > expected * 1000:
        return "silent"
    return "ok"


def connection_view(raw: dict[str, str], now: int | None = None) -> dict[str, Any]:
    """The public status object of a stored connection. Never includes a secret."""
    now = now_ms() if now is None else now
    state = raw["state"]
    health = health_of(raw, now)
    reason = raw.get("reason") or None
    display = display_of(raw, health, now)
    last_test = view_of_test(raw)
    prev_until = int(raw.get("prev_secret_until") or 0)
    return {
        "id": raw["id"],
        "account_id": raw["account_id"],
        "provider": raw["provider"],
        "state": state,
        "reason": reason,
        "reason_message": REASON_WORDS.get(reason or "", None),
        "health": health,
        "display": display,
        "cta": cta_for("failed" if display == "failed" else state, health,
                       last_test["state"] if last_test else None, reason),
        "last_test": last_test,
        "webhook_url": raw["webhook_url"],
        "pending_deadline": iso(raw.get("pending_deadline")) if state == "pending" else None,
        "created_at": iso(raw.get("created_at")),
        "updated_at": iso(raw.get("updated_at")),
        "last_event_at": iso(raw.get("last_event_at")),
        "reachable_at": iso(raw.get("reachable_at")),
        "secret_learnt_at": iso(raw.get("secret_learnt_at")),
        "events_received": int(raw.get("events_received") or 0),
        "last_error": _public_error(_json_field(raw.get("last_error"))),
        "failed_detail": _failed_detail(raw) if state == "failed" else None,
        "previous_secret_active": bool(raw.get("prev_secret") and prev_until > now),
        "previous_secret_last_used_at": iso(raw.get("prev_secret_used_at")),
        "version": int(raw.get("version") or 0),
    }


def _public_error(err: dict[str, Any] | None) -> dict[str, Any] | None:
    if not err:
        return None
    return {"code": err.get("code"), "message": err.get("message"), "at": iso(err.get("at"))}


def _failed_detail(raw: dict[str, str]) -> dict[str, Any] | None:
    """The most frequent rejection before the deadline, in words; the last error's own message when it
    has that code (it names the header, the skew or the other provider)."""
    code = raw.get("failed_detail")
    if not code:
        return None
    last = _json_field(raw.get("last_error")) or {}
    message = last.get("message") if last.get("code") == code else None
    return {"code": code, "message": message or REASON_WORDS.get(code)}
