"""Learned silence on the real Redis and the real scripts, with chosen timestamps (no sleeping): each
verified event teaches the connection its rhythm (a weighted mean and variance of the gaps), and a gap
far outside it shows ``silent``, feeds the notifier's silence sweep, and ends with the next event."""

from __future__ import annotations

import math
import uuid

import orjson
import pytest
import redis.asyncio as aioredis

from services.status_api.presentation import connection_view
from shared.models import DeliveryMessage
from shared.notify_store import NotifyStore
from shared.records import ConnectionRecord
from shared.rhythm import RhythmSettings
from shared.store import Store

T0 = 1_800_000_000_000
MINUTE = 60_000
RHYTHM = RhythmSettings(min_events=6, weight=0.25, k=4.0, factor=5.0, floor_s=600)


async def _connection(store: Store, provider: str = "stripe", expected_interval_s: int = 0) -> str:
    cid = uuid.uuid4().hex
    await store.create(ConnectionRecord(
        id=cid, account_id="acct-rhythm", provider=provider, state="pending", version=1,
        webhook_url=f"http://x/hooks/{cid}", secret="whsec_x", pending_deadline_ms=T0 + 600_000,
        created_at_ms=T0, updated_at_ms=T0, expected_interval_s=expected_interval_s))
    return cid


async def _deliver(store: Store, cid: str, at: int, outcome: str = "verified") -> str:
    msg = DeliveryMessage(
        delivery_id=uuid.uuid4().hex, connection_id=cid, provider="stripe", received_at_ms=at, outcome=outcome,  # type: ignore[arg-type]
        event_id=f"evt_{uuid.uuid4().hex}" if outcome == "verified" else None,
        reason="signature_mismatch" if outcome == "rejected" else None)
    return (await store.apply_delivery(msg)).status


async def _record(store: Store, cid: str) -> ConnectionRecord:
    record = await store.get(cid)
    assert record is not None
    return record


async def _outbox(store: Store, cid: str) -> list[str]:
    return [orjson.loads(e)["type"] for e in await store.redis.lrange(store.keys.outbox(cid), 0, -1)]


def _reference(gaps: list[int], rhythm: RhythmSettings) -> tuple[float, float]:
    mean = var = 0.0
    for n, gap in enumerate(gaps, start=1):
        weight = max(1 / n, rhythm.weight)
        diff = gap - mean
        mean += weight * diff
        var = (1 - weight) * (var + weight * diff * diff)
    return mean, var


@pytest.fixture
def store(redis_client: aioredis.Redis, prefix: str) -> Store:
    return Store(redis_client, prefix, rhythm=RHYTHM)


async def test_the_rhythm_is_a_weighted_mean_and_variance_of_verified_gaps(store: Store) -> None:
    cid = await _connection(store)
    gaps = [4 * MINUTE, 5 * MINUTE, 3 * MINUTE, 4 * MINUTE + 30_000, 4 * MINUTE, 6 * MINUTE, 4 * MINUTE]
    at = T0
    assert await _deliver(store, cid, at) == "applied"
    for i, gap in enumerate(gaps):
        at += gap
        assert await _deliver(store, cid, at - gap // 2, "rejected") == "applied"  # rejections teach nothing
        assert await _deliver(store, cid, at) == "applied"
        record = await _record(store, cid)
        mean, var = _reference(gaps[:i + 1], RHYTHM)
        assert record.gap_count == i + 1
        assert record.gap_mean_ms == pytest.approx(mean, abs=0.01)
        assert record.gap_var_ms2 == pytest.approx(var, rel=1e-6, abs=0.01)
    # Enough events now: the limit is the largest of mean + k stddev, factor * mean and the floor.
    limit = max(mean + RHYTHM.k * math.sqrt(var), RHYTHM.factor * mean, RHYTHM.floor_s * 1000)
    assert record.quiet_after_ms == pytest.approx(limit, abs=1)
    view = connection_view(record, at + 1000)
    assert view["rhythm"]["gaps_learned"] == len(gaps)
    assert view["rhythm"]["usual_gap_s"] == pytest.approx(mean / 1000, abs=0.001)
    assert view["rhythm"]["silent_after_s"] == record.quiet_after_ms // 1000


async def test_not_silent_before_the_minimum_count_however_long_the_gap(store: Store) -> None:
    cid = await _connection(store)
    for i in range(RHYTHM.min_events - 1):  # one event short
        await _deliver(store, cid, T0 + i * MINUTE)
    record = await _record(store, cid)
    assert record.gap_count == RHYTHM.min_events - 2 and record.quiet_after_ms == 0
    view = connection_view(record, T0 + 30 * 24 * 3600_000)  # a month later
    assert (view["health"], view["display"], view["silence"]) == ("ok", "connected", None)
    assert view["rhythm"]["silent_after_s"] is None
    assert await store.redis.zscore(store.keys.silence_index, cid) is None  # nothing for the sweep either


async def test_silent_after_a_long_gap_notified_once_and_ok_again_with_the_next_event(store: Store) -> None:
    cid = await _connection(store)
    notify = NotifyStore(store.redis, store.keys.prefix)
    at = T0
    for _ in range(10):  # every 4 minutes
        await _deliver(store, cid, at)
        at += 4 * MINUTE
    last = at - 4 * MINUTE
    record = await _record(store, cid)
    limit = record.quiet_after_ms
    assert limit == RHYTHM.factor * 4 * MINUTE  # regular: no spread, 5 x 4 min = 20 min (above the floor)
    silent_at = last + limit
    # The notifier's sweep finds it at the learned time.
    assert await store.redis.zscore(store.keys.silence_index, cid) == silent_at

    assert connection_view(record, silent_at)["health"] == "ok"  # at the limit: not beyond it
    await notify.mark_silent(cid, silent_at - 1)
    assert "connection.silent" not in await _outbox(store, cid)

    two_hours = last + 2 * 3600_000
    view = connection_view(record, two_hours)
    assert (view["health"], view["display"]) == ("silent", "silent")
    assert view["silence"] == {
        "cause": "learned_rhythm", "since": view["silence"]["since"], "quiet_for_s": 7200, "limit_s": limit // 1000,
        "message": "Usually hears from Stripe every ~4 minutes; nothing for 2 hours. Check the provider's side.",
    }
    assert view["reason_message"] == view["cta"]["hint"] == view["silence"]["message"]
    await notify.mark_silent(cid, two_hours)
    await notify.mark_silent(cid, two_hours + MINUTE)  # once per silence
    assert (await _outbox(store, cid)).count("connection.silent") == 1

    assert await _deliver(store, cid, two_hours) == "applied"
    record = await _record(store, cid)
    view = connection_view(record, two_hours + 1000)
    assert (view["health"], view["silence"]) == ("ok", None)
    assert (await _outbox(store, cid))[-1] == "connection.recovered"
    # The silence was learnt as no longer than the limit: it does not teach that silences are usual.
    assert record.gap_mean_ms == pytest.approx(0.75 * 4 * MINUTE + 0.25 * limit, abs=0.01)
    assert await store.redis.zscore(store.keys.silence_index, cid) == two_hours + record.quiet_after_ms


async def test_the_expected_interval_and_the_rhythm_the_shorter_wins(store: Store) -> None:
    cid = await _connection(store, expected_interval_s=3600)
    at = T0
    for _ in range(8):
        await _deliver(store, cid, at)
        at += 4 * MINUTE
    last = at - 4 * MINUTE
    record = await _record(store, cid)
    assert record.quiet_after_ms == 20 * MINUTE
    assert await store.redis.zscore(store.keys.silence_index, cid) == last + 20 * MINUTE
    assert connection_view(record, last + 30 * MINUTE)["silence"]["cause"] == "learned_rhythm"

    slow = await _connection(store, expected_interval_s=600)
    at = T0
    for _ in range(8):
        await _deliver(store, slow, at)
        at += 4 * MINUTE
    view = connection_view(await _record(store, slow), at + 3600_000)
    assert view["silence"]["cause"] == "expected_interval"
    assert view["silence"]["limit_s"] == 600
    assert view["silence"]["message"].startswith("Expects an event from Stripe at least every 10 minutes; nothing "
                                                 "for an hour")


async def test_an_event_applied_out_of_order_neither_moves_time_back_nor_teaches(store: Store) -> None:
    cid = await _connection(store)
    await _deliver(store, cid, T0)
    await _deliver(store, cid, T0 + 4 * MINUTE)
    await _deliver(store, cid, T0 + 2 * MINUTE)  # received earlier, applied later
    record = await _record(store, cid)
    assert record.last_event_at_ms == T0 + 4 * MINUTE
    assert record.gap_count == 1 and record.gap_mean_ms == 4 * MINUTE


def test_the_words_for_a_rhythm_of_about_an_hour() -> None:
    record = ConnectionRecord(id="a" * 32, account_id="a", provider="github", state="connected", webhook_url="u",
                              version=3, last_event_at_ms=T0, gap_count=30, gap_mean_ms=3600_000.0,
                              quiet_after_ms=8 * 3600_000)
    view = connection_view(record, T0 + 26 * 3600_000)
    assert view["silence"]["message"] == ("Usually hears from GitHub about once an hour; nothing for a day. Check the "
                                          "provider's side.")


def test_the_words_for_a_busy_connection() -> None:
    record = ConnectionRecord(id="a" * 32, account_id="a", provider="stripe", state="connected", webhook_url="u",
                              version=3, last_event_at_ms=T0, gap_count=500, gap_mean_ms=350.0,
                              quiet_after_ms=900_000)
    view = connection_view(record, T0 + 20 * 60_000)
    assert view["silence"]["message"] == ("Usually hears from Stripe more than once a second; nothing for 20 minutes. "
                                          "Check the provider's side.")
