"""The status object, for any connection the store can hold, validates against the response models.

The hashes are drawn (hypothesis) with the fields the Lua scripts write: every state, reason, test
window, rejection and secret rotation, in any combination and at any time relative to now, so every
branch of the presentation is reached, including those the running system reaches only slowly
(a deadline passed before the sweep ran, a connection silent for days)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.status_api import schema as s
from services.status_api.presentation import REASON_WORDS, TEST_REASON_WORDS, connection_view, shown, view_of_test
from shared.models import STATES
from shared.records import ConnectionRecord, TestWindow

NOW_MS = 1_795_000_000_000
HEX_ID = st.text("0123456789abcdef", min_size=32, max_size=32)
MS = st.integers(min_value=NOW_MS - 10 * 24 * 3600 * 1000, max_value=NOW_MS + 24 * 3600 * 1000)
REASONS = st.sampled_from(sorted(REASON_WORDS))
COUNTS = st.dictionaries(REASONS, st.integers(min_value=1, max_value=1000), max_size=3)


def _optional(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, str]]:
    """Each field present or not, as Redis holds it: a string."""
    return st.fixed_dictionaries({}, optional={k: v.map(str) for k, v in fields.items()})


def _json(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
    return strategy.map(lambda value: orjson.dumps(value).decode())


LAST_ERROR = st.fixed_dictionaries({"code": REASONS, "message": st.text(min_size=1, max_size=40), "at": MS})
HOPS = st.fixed_dictionaries({"delivery_id": HEX_ID, "outcome": st.sampled_from(["verified", "rejected", "reachable"])},
                             optional={"reason": REASONS, "duplicate": st.booleans(),
                                       **{name: MS for name in ("received", "checked", "queued", "consumed", "stored",
                                                                "pushed")}})
TEST = st.fixed_dictionaries({
    "test_id": HEX_ID,
    "test_state": st.sampled_from(["waiting", "passed", "failed"]),
    "test_started_at": MS.map(str),
    "test_expires_at": MS.map(str),
}, optional={
    "test_reason": st.sampled_from(sorted(TEST_REASON_WORDS)),
    "test_seen": _json(COUNTS),
    "test_finished_at": MS.map(str),
    "test_hops": _json(st.one_of(st.just({}), HOPS)),
})


@st.composite
def stored_connections(draw: st.DrawFn) -> dict[str, str]:
    raw = {
        "id": draw(HEX_ID),
        "account_id": "acct_42",
        "provider": draw(st.sampled_from(["standard-webhooks", "stripe", "github"])),
        "state": draw(st.sampled_from(STATES)),
        "webhook_url": "http://127.0.0.1:8080/hooks/x",
        "version": str(draw(st.integers(min_value=1, max_value=10_000))),
        "created_at": str(draw(MS)),
        "updated_at": str(draw(MS)),
        "pending_deadline": str(draw(MS)),
        "secret": "whsec_c2VjcmV0",
        "settings": "{}",
        "timeout_s": "600",
        "seen": draw(_json(COUNTS)),
    }
    raw.update(draw(_optional({
        "reason": st.one_of(REASONS, st.sampled_from(["verified_event", "deadline_bad_signatures"])),
        "expected_interval_s": st.integers(min_value=1, max_value=7 * 24 * 3600),
        "last_event_at": MS,
        "reachable_at": MS,
        "secret_learnt_at": MS,
        "rejected_since_event": st.integers(min_value=0, max_value=10),
        "events_received": st.integers(min_value=0, max_value=10**9),
        "failed_detail": REASONS,
        "prev_secret": st.just("whsec_b2xk"),
        "prev_secret_until": MS,
        "prev_secret_used_at": MS,
        # The learned rhythm (apply_delivery.lua).
        "gap_count": st.integers(min_value=0, max_value=10**6),
        "gap_mean_ms": st.floats(min_value=0, max_value=7 * 24 * 3600_000.0).map(lambda x: f"{x:.3f}"),
        "gap_var_ms2": st.floats(min_value=0, max_value=1e14).map(lambda x: f"{x:.3f}"),
        "quiet_after_ms": st.integers(min_value=0, max_value=30 * 24 * 3600_000),
    })))
    if draw(st.booleans()):
        raw["last_error"] = draw(_json(LAST_ERROR))
    if draw(st.booleans()):
        raw.update(draw(TEST))
    return raw


@settings(max_examples=200, deadline=None)
@given(raw=stored_connections())
def test_every_stored_connection_is_shown_as_the_model_says(raw: dict[str, str]) -> None:
    view = _view(raw)
    shown = s.Connection.model_validate_json(orjson.dumps(view), strict=True)  # as the API serves it
    assert shown.id == raw["id"] and shown.state == raw["state"]
    assert (shown.last_test is None) == ("test_id" not in raw)


def _view(raw: dict[str, str]) -> dict[str, Any]:
    return connection_view(ConnectionRecord.from_hash(raw), NOW_MS)


BASE = {"id": "0" * 32, "account_id": "acct_42", "provider": "stripe", "webhook_url": "http://h/hooks/x",
        "version": "3", "created_at": str(NOW_MS - 60_000), "pending_deadline": str(NOW_MS + 60_000)}
HOUR_AGO = str(NOW_MS - 3600 * 1000)


@pytest.mark.parametrize(("fields", "display"), [
    ({"state": "pending"}, "pending"),
    ({"state": "pending", "pending_deadline": HOUR_AGO}, "failed"),  # past its deadline, not yet swept
    ({"state": "failed", "reason": "deadline_bad_signatures", "failed_detail": "signature_mismatch"}, "failed"),
    ({"state": "connected", "last_event_at": HOUR_AGO}, "connected"),
    ({"state": "connected", "last_event_at": HOUR_AGO, "rejected_since_event": "3"}, "failing"),
    ({"state": "connected", "last_event_at": HOUR_AGO, "expected_interval_s": "60"}, "silent"),
    ({"state": "connected", "last_event_at": HOUR_AGO, "gap_count": "40", "gap_mean_ms": "240000.000",
      "quiet_after_ms": "1920000"}, "silent"),  # by its learned rhythm
    ({"state": "disconnected", "reason": "disconnected_by_user"}, "disconnected"),
])
def test_each_badge_conforms(fields: dict[str, str], display: str) -> None:
    """One connection for each badge (the drawn ones above reach them all, but not every time)."""
    view = _view({**BASE, **fields})
    assert s.Connection.model_validate_json(orjson.dumps(view), strict=True).display == display


@settings(max_examples=100, deadline=None)
@given(raw=TEST)
def test_every_test_window_is_shown_as_the_model_says(raw: dict[str, str]) -> None:
    view = view_of_test(TestWindow.from_hash(raw))
    assert view is not None
    shown = s.LastTest.model_validate_json(orjson.dumps(view), strict=True)
    assert shown.id == raw["test_id"]


@settings(max_examples=300, deadline=None)
@given(raw=stored_connections(), later=st.one_of(st.integers(0, 3000), st.integers(0, 3 * 24 * 3600 * 1000)))
def test_a_kept_view_is_the_view_of_the_moment(raw: dict[str, str], later: int) -> None:
    """``shown`` keeps a rendered view until ``view_valid_until``: whenever it is asked again, what it
    answers is exactly what rendering at that moment gives."""
    raw = {**{k: v for k, v in raw.items() if k not in ("secret", "settings")},
           **({"prev_secret": "(sealed)"} if raw.get("prev_secret") else {})}  # as read to be shown
    ConnectionRecord.from_hash(raw)
    record = ConnectionRecord.from_hash(raw)  # read again: kept
    assert record.is_kept()
    shown(record, NOW_MS)
    view, body = shown(record, NOW_MS + later)
    assert view == connection_view(record, NOW_MS + later)
    assert body == orjson.dumps(connection_view(record, NOW_MS + later))
    # Asked about an earlier moment (a clock that went back): never the view kept from the later one.
    view, body = shown(record, NOW_MS)
    assert view == connection_view(record, NOW_MS)
    assert body == orjson.dumps(connection_view(record, NOW_MS))
