"""What people are shown of a stored connection: the public status object, its button, its words.

``connection_view`` turns a ``ConnectionRecord`` into the JSON the API, the stream and the UI show
(never a secret). ``display`` is one word a UI can style without logic; ``reason_message`` and the
button's ``hint`` say the same thing as the badge (a connected connection whose latest deliveries fail
says so, not that its first event verified). The button table is in docs/API.md.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from datetime import timedelta
from typing import Any

import humanize
import orjson

from shared.models import FAILING_AFTER_REJECTED, iso, now_ms
from shared.providers import PROVIDERS
from shared.records import ConnectionRecord, LastError, TestWindow

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
    "secret_of_other_connection": "Deliveries are signed with the secret of another of your connections to "
    "this provider: the URL of one connection is pasted in the other's dashboard. Paste each connection's "
    "own webhook URL in the provider.",
    "secret_not_set": "Deliveries arrive, but no signing secret is set yet: reconnect with the secret the "
    "provider shows.",
    "verify_token_mismatch": "The provider's verify token does not match the connection's settings.",
    "malformed_handshake": "The provider's handshake request was incomplete.",
    "invalid_handshake_token": "A handshake carried a token unlike the provider's: it was refused.",
    "secret_already_learnt": "A second handshake tried to set the signing secret; the first one's secret "
    "is kept. To register a new webhook, reconnect and let the provider's handshake set it again.",
    "body_too_large": "Deliveries are larger than the receiver accepts (MAX_BODY_BYTES): check what the "
    "provider sends to this URL.",
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
SILENT_WORDS = "No event has arrived for longer than this connection expects. Check the provider's side."
FAILING_WORDS = "Recent deliveries fail verification. See the recent deliveries for why."




def cta_for(
    state: str, health: str | None = None, test_state: str | None = None, reason: str | None = None,
    silence_words: str | None = None,
) -> dict[str, Any]:
    """The connect button: a label, an action and a secondary button the UI shows as is, plus ``hint``,
    the state's reason in plain words (or null; ``silence_words``: why a silent one is silent)."""
    if state != "disconnected" and test_state == "waiting":
        return _cta("Testing…", None, None, None, TEST_REASON_WORDS["test_waiting"])
    if state == "pending":
        return _cta("Waiting for first event…", "send_test", "Send test event", "send_test",
                    REASON_WORDS["awaiting_first_event"])
    if state == "connected":
        if health == "failing":
            return _cta("Fix signing secret", "reconnect", "Send test event", "send_test", FAILING_WORDS)
        if health == "silent":
            return _cta("Connected", "reconnect", "Send test event", "send_test", silence_words or SILENT_WORDS)
        return _cta("Connected", "reconnect", "Reconnect", "reconnect", None)
    if state == "failed":
        return _cta("Reconnect", "reconnect", "Send test event", "send_test", REASON_WORDS.get(_failed_reason(reason)))
    return _cta("Connect", "connect", None, None, None)


def _failed_reason(reason: str | None) -> str:
    """A failed connection's reason; one past its deadline but not yet swept has none of its own yet."""
    return reason if reason and reason.startswith("deadline_") else "deadline_no_events"


def _cta(label: str, action: str | None, secondary: str | None, secondary_action: str | None,
         hint: str | None) -> dict[str, Any]:
    return {"label": label, "action": action, "secondary": secondary, "secondary_action": secondary_action,
            "hint": hint}


def health_of(record: ConnectionRecord, now: int) -> str | None:
    """For a connected connection: ``ok``, ``failing`` (at least ``FAILING_AFTER_REJECTED`` deliveries
    rejected since the last verified one) or ``silent``."""
    if record.state != "connected":
        return None
    last_event = record.last_event_at_ms
    if record.rejected_since_event >= FAILING_AFTER_REJECTED:
        return "failing"
    limit = record.quiet_limit_ms
    if limit and last_event and now - last_event > limit:
        return "silent"
    return "ok"


def _duration(ms: float) -> str:
    return humanize.naturaldelta(timedelta(milliseconds=ms))


def _title(provider: str) -> str:
    adapter = PROVIDERS.get(provider)
    return adapter.info.title if adapter else provider


def silence_of(record: ConnectionRecord, now: int) -> dict[str, Any]:
    """Why a silent connection is silent: the limit it passed (its expected interval, or the one its
    rhythm taught, whichever is shorter) and that in plain words."""
    gap = now - record.last_event_at_ms
    expected, learned = record.expected_interval_s * 1000, record.quiet_after_ms
    title = _title(record.provider)
    if expected and (not learned or expected <= learned):
        cause, limit = "expected_interval", expected
        words = f"Expects an event from {title} at least every {_duration(expected)}"
    else:
        cause, limit = "learned_rhythm", learned
        usual = _duration(record.gap_mean_ms)  # "4 minutes", or "a minute", "an hour"
        often = ("more than once a second" if record.gap_mean_ms < 1000
                 else f"every ~{usual}" if usual[0].isdigit() else f"about once {usual}")
        words = f"Usually hears from {title} {often}"
    return {
        "cause": cause,
        "since": iso(record.last_event_at_ms + limit),
        "quiet_for_s": gap // 1000,
        "limit_s": limit // 1000,
        "message": f"{words}; nothing for {_duration(gap)}. Check the provider's side.",
    }


def rhythm_of(record: ConnectionRecord) -> dict[str, Any] | None:
    """What the connection learnt of how its verified events are spaced (null before two of them)."""
    if not record.gap_count:
        return None
    return {
        "gaps_learned": record.gap_count,
        "usual_gap_s": round(record.gap_mean_ms / 1000, 3),
        "spread_s": round(math.sqrt(max(record.gap_var_ms2, 0.0)) / 1000, 3),
        "silent_after_s": record.quiet_after_ms // 1000 if record.quiet_after_ms else None,
    }


def display_of(record: ConnectionRecord, health: str | None, now: int) -> str:
    """One word a UI can style without logic: connected, pending, failing, silent, failed, disconnected."""
    if record.state == "connected" and health in ("failing", "silent"):
        return health
    if record.state == "pending" and record.pending_deadline_ms <= now:
        return "failed"  # the sweep has not run yet; the deadline has passed all the same
    return record.state


def reason_message(record: ConnectionRecord, display: str, silence_words: str | None = None) -> str | None:
    """The reason in plain words, saying what the badge (``display``) says."""
    if display == "failing":
        return FAILING_WORDS
    if display == "silent":
        return silence_words or SILENT_WORDS
    if display == "failed":
        return REASON_WORDS.get(_failed_reason(record.reason))
    return REASON_WORDS.get(record.reason or "")


# A test's hops, in order (docs/API.md, "Test events"); ``verified`` or ``rejected``, never both.
HOPS = ("received", "verified", "rejected", "queued", "consumed", "stored", "pushed")
HOP_WORDS = {"received": "received", "verified": "verified", "queued": "queued", "consumed": "consumed by the "
             "verifier", "stored": "stored", "pushed": "pushed to live pages"}


def _listed(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def hops_message(hops: dict[str, Any], reached: list[str], waiting: bool) -> str:
    """The furthest hop the test's delivery reached, in plain words."""
    if not reached:
        if waiting:
            return "Nothing has reached the receiver yet."
        return "Nothing reached the receiver: no request for this connection arrived during the test."
    reason = hops.get("reason")
    if "rejected" in reached:
        code = str(reason or "rejected")
        words = REASON_WORDS.get(code)
        return f"Reached the receiver, but was rejected: {code.replace('_', ' ')}." + (f" {words}" if words else "")
    if hops.get("duplicate"):
        return ("Received, verified, queued and consumed, but it repeats an event already received (the provider "
                "retried it), so it is not counted again and cannot pass the test.")
    if hops.get("outcome") == "reachable":
        return ("Reached the receiver: a handshake that proves the URL, not the signing secret; no signed event "
                "yet.")
    if reached[-1] == "pushed":
        return "Reached every hop: " + _listed([HOP_WORDS[name] for name in reached]) + "."
    following = HOPS[HOPS.index(reached[-1]) + 1:]
    upcoming = next((name for name in following if name != "rejected"), None)
    done = _listed([HOP_WORDS[name] for name in reached])
    return done[0].upper() + done[1:] + (f"; not {HOP_WORDS[upcoming]} yet." if upcoming else ".")


def view_of_hops(hops: dict[str, Any], waiting: bool) -> dict[str, Any]:
    """When the delivery a test follows reached each hop, the furthest one, and that in words."""
    outcome, checked = hops.get("outcome"), hops.get("checked")
    at = {name: hops.get(name) for name in HOPS}
    at["verified"] = checked if outcome == "verified" else None
    at["rejected"] = checked if outcome == "rejected" else None
    reached = [name for name in HOPS if at[name]]
    return {
        "delivery_id": hops.get("delivery_id"),
        **{name: iso(at[name]) for name in HOPS},
        "rejected_reason": hops.get("reason") if outcome == "rejected" else None,
        "duplicate": bool(hops.get("duplicate")),
        "last": reached[-1] if reached else None,
        "message": hops_message(hops, reached, waiting),
    }


def view_of_test(test: TestWindow | None) -> dict[str, Any] | None:
    """A test event window, as the API shows it."""
    if test is None:
        return None
    reason = test.reason or ("test_waiting" if test.state == "waiting" else None)
    return {
        "id": test.id,
        "state": test.state,
        "reason": reason if test.state != "waiting" else None,
        "reason_message": TEST_REASON_WORDS.get(reason or ""),
        "seen": test.seen,
        "started_at": iso(test.started_at_ms or None),
        "expires_at": iso(test.expires_at_ms or None),
        "finished_at": iso(test.finished_at_ms or None),
        "hops": view_of_hops(test.hops, test.state == "waiting"),
    }


def connection_view(record: ConnectionRecord, now: int | None = None) -> dict[str, Any]:
    """The public status object of a stored connection. Never includes a secret."""
    now = now_ms() if now is None else now
    state = record.state
    health = health_of(record, now)
    display = display_of(record, health, now)
    last_test = view_of_test(record.test)
    silence = silence_of(record, now) if display == "silent" else None
    words = silence["message"] if silence else None
    return {
        "id": record.id,
        "account_id": record.account_id,
        "provider": record.provider,
        "state": state,
        "reason": record.reason,
        "reason_message": reason_message(record, display, words),
        "health": health,
        "display": display,
        "silence": silence,
        "rhythm": rhythm_of(record),
        "cta": cta_for("failed" if display == "failed" else state, health,
                       last_test["state"] if last_test else None, record.reason, words),
        "last_test": last_test,
        "webhook_url": record.webhook_url,
        "pending_deadline": iso(record.pending_deadline_ms) if state == "pending" else None,
        "created_at": iso(record.created_at_ms or None),
        "updated_at": iso(record.updated_at_ms or None),
        "last_event_at": iso(record.last_event_at_ms or None),
        "reachable_at": iso(record.reachable_at_ms or None),
        "secret_learnt_at": iso(record.secret_learnt_at_ms or None),
        "events_received": record.events_received,
        "last_error": _public_error(record.last_error),
        "failed_detail": _failed_detail(record) if state == "failed" else None,
        "previous_secret_active": bool(record.prev_secret and record.prev_secret_until_ms > now),
        "previous_secret_last_used_at": iso(record.prev_secret_used_at_ms or None),
        "version": record.version,
    }


SHOWN_KEPT = 4096  # rendered views kept, by connection id (``shown``)
# By connection id: (the record, rendered at, valid until, the view, its JSON).
_SHOWN: OrderedDict[str, tuple[ConnectionRecord, int, int | None, dict[str, Any], bytes]] = OrderedDict()


def shown(record: ConnectionRecord, now: int | None = None) -> tuple[dict[str, Any], bytes]:
    """``connection_view(record, now)`` and its JSON. For a record ``ConnectionRecord.from_hash`` keeps
    (a connection read again unchanged gives the same one) both are kept until ``view_valid_until``, so
    a page polling a connection that did not change is answered without building and serialising its
    view again; the view is the same, byte for byte, as one rendered at ``now``. Read-only: callers
    share it."""
    now = now_ms() if now is None else now
    kept = _SHOWN.get(record.id)
    # Only between the moment it was rendered and the next change by time: a clock that went back (or a
    # caller asking about an earlier moment) gets a fresh rendering, never a view of the future.
    if kept is not None and kept[0] is record and kept[1] <= now and (kept[2] is None or now < kept[2]):
        return kept[3], kept[4]
    view = connection_view(record, now)
    if not record.is_kept():
        return view, orjson.dumps(view)
    # Copied to its own size: orjson's bytes keep the 8 KiB buffer they were written in.
    body = memoryview(orjson.dumps(view)).tobytes()
    _SHOWN[record.id] = (record, now, view_valid_until(record, now), view, body)
    if len(_SHOWN) > SHOWN_KEPT:
        _SHOWN.popitem(last=False)  # the oldest kept
    return view, body


def view_valid_until(record: ConnectionRecord, now: int) -> int | None:
    """The first moment after ``now`` at which ``connection_view(record, ...)`` shows something else
    though nothing is stored (None: not before the record changes). A view rendered at ``now`` may be
    sent as it is until then, not after: a pending deadline passing (``failed``), silence beginning, its
    figures moving once a second while it lasts, the previous secret's grace ending."""
    moments = []
    if record.state == "pending" and record.pending_deadline_ms > now:
        moments.append(record.pending_deadline_ms)
    limit, last_event = record.quiet_limit_ms, record.last_event_at_ms
    if health_of(record, now) in ("ok", "silent") and limit and last_event:
        silent_from = last_event + limit + 1
        # Before: when silence begins. During: the next whole second of it (``quiet_for_s``, the words).
        moments.append(silent_from if silent_from > now else now + 1000 - (now - last_event) % 1000)
    if record.prev_secret and record.prev_secret_until_ms > now:
        moments.append(record.prev_secret_until_ms)
    return min(moments, default=None)


def _public_error(err: LastError | None) -> dict[str, Any] | None:
    if err is None:
        return None
    return {"code": err.code, "message": err.message, "at": iso(err.at_ms or None)}


def _failed_detail(record: ConnectionRecord) -> dict[str, Any] | None:
    """The most frequent rejection before the deadline, in words; the last error's own message when it
    has that code (it names the header, the skew or the other provider)."""
    code = record.failed_detail
    if not code:
        return None
    last = record.last_error
    message = last.message if last is not None and last.code == code else None
    return {"code": code, "message": message or REASON_WORDS.get(code)}
