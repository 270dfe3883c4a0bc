"""The bench's pure pieces: statistics, the ratio table, the growth verdicts, sizing, the load generator's
bodies and its spread over seeded connections, end-to-end matching. (The bench itself prints figures;
nothing here times anything.)"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
import redis.asyncio as aioredis

from bench.e2e import match_changes
from bench.harness import Workload, redis_commands, redis_commands_line
from bench.load import LoadResult
from bench.loadgen import SPREAD, event_body, seeded_url
from bench.plan import PER_ACCOUNT, Plan
from bench.plots import draw
from bench.seed import CHUNK, Seeded, resp, seed_to
from bench.series import Series
from bench.sizing import size_for
from bench.stats import growth_exponent, median, percentile
from bench.table import Row, at_least, build_rows, cpu_table, render
from shared.store import Store


def test_percentile_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_median_ignores_nan() -> None:
    assert median([3.0, float("nan"), 1.0, 2.0]) == 2.0
    assert math.isnan(median([float("nan")]))


@pytest.mark.parametrize("k", [0.0, 0.5, 1.0, 2.0])
def test_growth_exponent_recovers_a_power_law(k: float) -> None:
    xs = [1e3, 1e4, 1e5, 1e6]
    assert growth_exponent(xs, [5 * x**k for x in xs]) == pytest.approx(k, abs=1e-9)


def test_growth_exponent_needs_two_usable_points() -> None:
    assert math.isnan(growth_exponent([1.0, 2.0], [1.0, float("nan")]))
    assert math.isnan(growth_exponent([10.0, 10.0], [1.0, 2.0]))


def test_row_ratio_and_target() -> None:
    row = Row("receiver", 900.0, "/s", "minimal receiver", 1000.0, ">= 90% of it", at_least(900.0, 1000.0, 0.9))
    assert row.ratio() == "90%"
    assert row.passed is True
    assert at_least(899.0, 1000.0, 0.9) is False
    assert at_least(float("nan"), 1000.0, 0.9) is None
    assert Row("x", 1.0, "/s", "limit", float("nan")).ratio() == ""
    assert Row("x", None, "/s", "limit", 2.0).ratio() == ""


def test_render_has_every_column_and_verdict() -> None:
    text = render([
        Row("whole path", 800.0, "/s", "minimal pipeline", 1000.0, ">= 80% of it", True),
        Row("e2e p99", 62.5, "ms", target="<= 50 ms", passed=False),
    ])
    lines = text.splitlines()
    assert lines[0].split("|")[1:-1] == [f" {h.ljust(len(c) - 2)} " for h, c in
                                         zip(("row", "measured", "limit (same run)", "ratio", "target", "met"),
                                             lines[0].split("|")[1:-1], strict=True)]
    assert "| 800/s " in lines[2] and "minimal pipeline 1,000/s" in lines[2] and "80%" in lines[2]
    assert lines[2].rstrip().endswith("| yes |")
    assert "62.5 ms" in lines[3] and lines[3].rstrip().endswith("| NO  |")
    assert len({len(line) for line in lines}) == 1  # columns line up


def test_cpu_table_medians_and_totals() -> None:
    text = cpu_table({"ours": [{"receiver": 500.0, "Redis": 100.0}, {"receiver": 700.0, "Redis": 100.0},
                               {"receiver": 600.0, "Redis": 300.0}],
                      "minimal": [{"receiver": 300.0}]},
                     {"minimal": {"receiver": "minimal receiver"}})
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in text.splitlines()[2:]}
    assert rows["receiver"] == ["600", "300 (minimal receiver)"]
    assert rows["Redis"] == ["100", "-"]
    assert rows["all"] == ["800", "300"]  # the median of the rounds' totals (600, 800, 900)


def test_busy_line_says_how_many_cpus_the_open_loop_rate_keeps_busy() -> None:
    from types import SimpleNamespace

    from bench.run import busy_line

    bench = SimpleNamespace(m={"rate": [1000.0, 2000.0, 1500.0]},
                            cpu={"ours": [{"receiver": 1200.0, "Redis": 400.0}], "minimal": [{"receiver": 800.0}]})
    line = busy_line(bench)  # type: ignore[arg-type]
    assert "ours 2.40" in line and "the minimal pipeline 1.20" in line  # 1,600 µs and 800 µs x 1,500/s


def test_series_verdict_states_a_limit_only_past_linear() -> None:
    flat = Series("connections", "n", "p99", x=[1e3, 1e4, 1e5], throughput=[1000.0] * 3, p99_ms=[5.0] * 3)
    assert flat.verdict().endswith("flat")
    superlinear = Series("streams", "n", "p99", x=[1e2, 1e3, 1e4], throughput=[1000.0] * 3,
                         p99_ms=[1.0, 100.0, 10_000.0])
    assert "LIMIT" in superlinear.verdict()
    linear_cost = Series("body", "KiB", "p99", x=[1.0, 10.0, 100.0], throughput=[1000.0, 100.0, 10.0],
                         p99_ms=[5.0] * 3)
    assert "at most linearly" in linear_cost.verdict()


def test_size_for_scales_with_the_rate() -> None:
    us = {"receiver": 700.0, "verifier": 350.0, "RabbitMQ": 350.0, "Redis": 100.0}
    ten = size_for(10_000, us, 10_000.0, 1000.0, 1_000_000, 300.0, 3600)
    hundred = size_for(100_000, us, 10_000.0, 1000.0, 1_000_000, 300.0, 3600)
    assert ten["receivers"].startswith("10 processes")  # 10,000 x 700 µs = 7 cores at 70%
    assert hundred["receivers"].startswith("100 processes")
    assert ten["verifiers"].startswith("5 processes")
    assert "2 quorum queues" in ten["RabbitMQ"] and "15 quorum queues" in hundred["RabbitMQ"]
    assert ten["Redis"].startswith("2 shards")  # 1 core of Redis at 50%
    # 1e6 x 1000 B + 10,000/s x 3600 s x 300 B
    assert f"{(1e9 + 10_000 * 3600 * 300) / 2**30:,.1f} GiB" in ten["Redis"]


def test_event_body_has_the_size_asked_and_stays_json() -> None:
    for size in (0, 1024, 65536, 1 << 20):
        body = event_body(7, size)
        assert len(body) == max(size, len(event_body(7)))
        assert orjson.loads(body)["id"] == "evt_7"


def test_seeded_urls_visit_every_connection_once_per_cycle() -> None:
    seeded = {"bases": ["http://a/hooks/", "http://b/hooks/"], "stem": "ab" * 8, "count": 1000}
    seen = [seeded_url(seeded, n) for n in range(1000)]
    assert sorted(t for _, t in seen) == list(range(1000))
    assert seen[1] == (f"http://b/hooks/{'ab' * 8}{SPREAD % 1000:016x}", SPREAD % 1000)
    assert all(len(url.rsplit("/", 1)[1]) == 32 for url, _ in seen)
    # a count that shares a factor with the spread falls back to walking one by one
    assert sorted(seeded_url({**seeded, "count": SPREAD * 2}, n)[1] for n in range(SPREAD * 2)) == \
        list(range(SPREAD * 2))


def test_match_changes_uses_the_first_status_that_includes_each_webhook() -> None:
    # Two webhooks to connection "c" (version 10 before): they show from versions 11 and 12.
    records = [(0, 100.0, 202), (0, 100.5, 202), (0, 101.0, 503)]
    changes = [["c", 11, 100.02], ["c", 13, 100.6], ["c", 12, 100.7]]
    latencies = match_changes(records, [10], ["c"], changes)
    assert latencies == pytest.approx([20.0, 100.0])  # the second is in version 13, seen at 100.6


def test_load_result_ledger_line() -> None:
    result = LoadResult.empty()
    result.sent, result.accepted, result.refused = 10, 7, 2
    assert result.void
    assert result.ledger() == "sent 10 = accepted 7 + refused 2 + UNANSWERED 1"
    result.refused = 3
    assert not result.void and result.ledger() == "sent 10 = accepted 7 + refused 3"


def test_draw_writes_a_png_per_measured_series(tmp_path: Path) -> None:
    measured = Series("connections", "connections", "p99 (ms)", x=[1e3, 1e4], throughput=[100.0, 90.0],
                      p99_ms=[5.0, 6.0])
    paths = draw([("connections", measured), ("streams", Series("streams", "streams", "p99 (ms)"))],
                 [1e3, 1e4], [800.0, 810.0], 30_000.0, str(tmp_path))
    assert [Path(p).name for p in paths] == ["connections.png", "memory.png"]
    for p in paths:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resp_packs_a_command_as_redis_reads_it() -> None:
    assert resp(b"SADD", b"k", b"v1") == b"*3\r\n$4\r\nSADD\r\n$1\r\nk\r\n$2\r\nv1\r\n"
    assert resp(b"SET", b"", "é".encode()) == b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$2\r\n\xc3\xa9\r\n"


async def test_seeded_connections_read_back_as_the_store_reads_them(redis_client: aioredis.Redis, prefix: str) -> None:
    store, seeded = Store(redis_client, prefix), Seeded()
    await seed_to(redis_client, store, seeded, 2 * CHUNK + 5, "http://127.0.0.1:1")
    assert seeded.count == 2 * CHUNK + 5
    for n in (0, CHUNK, 2 * CHUNK + 4):
        record = await store.get(seeded.cid(n))
        assert record is not None
        assert (record.id, record.state, record.provider) == (seeded.cid(n), "connected", "standard-webhooks")
        assert record.secret == seeded.secret  # sealed per connection, opened with its id
        assert record.account_id == seeded.account(n)
        assert record.webhook_url == f"http://127.0.0.1:1/hooks/{seeded.cid(n)}"
    raw = await redis_client.hget(store.keys.conn(seeded.cid(1)), "secret")
    assert raw is not None and seeded.secret not in raw  # never stored in the clear
    assert await redis_client.scard(store.keys.account(seeded.account(0))) == PER_ACCOUNT
    assert int(await redis_client.hget(store.keys.state_counts, "connected") or 0) == 2 * CHUNK + 5
    assert await store.get(seeded.cid(2 * CHUNK + 5)) is None


def test_build_rows_puts_each_target_beside_its_limit() -> None:
    plan = Plan.from_env()
    base, many = Workload("base", 1000, 1024), Workload("many", 100_000, 1024, seeded=True)
    m = {
        "base:recv": [900.0, 950.0, 1000.0], "base:min_recv": [1000.0], "bare": [5000.0],
        "base:whole": [700.0], "base:min_pipe": [1000.0], "base:api": [850.0], "base:json": [1000.0],
        "rate": [500.0], "recv_p99_rate": [3.0], "min_pipe_p99": [2.0], "refused_rate": [0.0],
        "e2e_p50": [10.0], "e2e_p99": [40.0], "backlog_start": [3.0], "backlog_end": [4.0], "backlog_max": [9.0],
        "over_rate": [2000.0], "over_shed": [0.25], "over_p99_accepted": [80.0], "over_accepted": [990.0],
        "over_unanswered": [0.0], "api_p99": [2.0], "json_p99": [1.5], "redis_get": [90_000.0],
        "verifier": [4000.0], "consume": [12_000.0],
        "many:recv": [850.0], "many:min_recv": [1000.0], "many:whole": [820.0], "many:min_pipe": [1000.0],
    }
    bench = SimpleNamespace(m=m, plan=plan, base=base, variants_done=[many], sse=None, sweep={}, memory=700.0)
    rows = {r.name: r for r in build_rows(bench)}  # type: ignore[arg-type]
    recv = rows["receiver at saturation (1,000 conns, 1 KiB)"]
    assert (recv.value, recv.limit, recv.ratio(), recv.passed) == (950.0, 1000.0, "95%", True)
    whole = rows["whole path, accepted and stored (1,000 conns, 1 KiB)"]
    assert (whole.ratio(), whole.passed) == ("70%", False)
    assert rows["status API reads at saturation (1,000 conns, 1 KiB)"].passed is True
    assert rows["  at 500/s: webhook -> status on SSE, p99"].passed is True
    assert rows["  at 500/s: queue backlog at start -> end (max 9)"].passed is True
    assert rows["  overload at 2,000/s (2x the minimal pipeline): 503 with Retry-After"].passed is True
    assert rows["receiver at saturation (100,000 conns, 1 KiB)"].passed is False
    assert rows["whole path, accepted and stored (100,000 conns, 1 KiB)"].passed is True
    assert "status API reads at saturation (100,000 conns, 1 KiB)" not in rows  # not measured: no row
    assert rows["Redis memory per idle connection (made through the API)"].passed is True


async def test_redis_commands_counts_what_ran_between_two_readings(redis_client: aioredis.Redis, prefix: str) -> None:
    before = await redis_commands(redis_client)
    for n in range(10):
        await redis_client.hincrby(f"{prefix}:counted", "n", n)
    after = await redis_commands(redis_client)
    calls = after["hincrby"][0] - before.get("hincrby", (0, 0))[0]
    assert calls >= 10  # other clients of the machine's Redis may add to it, never take away
    assert f"hincrby {calls / 10:.2f}x" in redis_commands_line(before, after, 10)


def test_redis_commands_line_ranks_by_time_per_webhook() -> None:
    before = {"evalsha": (100, 5_000), "hmget": (100, 500), "ping": (1, 1)}
    after = {"evalsha": (300, 17_000), "hmget": (300, 1_500), "ping": (1, 1), "publish": (200, 200)}
    assert redis_commands_line(before, after, 200) == "evalsha 1.00x 60.0 µs, hmget 1.00x 5.0 µs, publish 1.00x 1.0 µs"
    assert redis_commands_line(before, after, 200, top=1) == "evalsha 1.00x 60.0 µs"


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instructions_reads_callgrinds_count_and_more_work_counts_more(tmp_path: Path) -> None:
    """``bench.instructions`` reads callgrind's own output: a program that does more counts more."""
    from bench.instructions import summary

    counts = []
    for n in (10_000, 1_000_000):
        out = tmp_path / f"{n}.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-S", "-c",
                        f"sum(range({n}))"], check=True, capture_output=True)
        counts.append(summary(str(out)))
    assert counts[0] is not None and counts[1] is not None
    assert counts[0] > 1_000_000  # an interpreter's start alone
    assert counts[1] - counts[0] > 990_000 * 10  # at least ten instructions per number added
