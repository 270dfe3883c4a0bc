"""What one bench run does: the plan read from ``BENCH_*`` variables, and where things are."""

from __future__ import annotations

import os
import secrets
import socket
import sys
import uuid
from dataclasses import dataclass, field

from shared.config import DEFAULT_AMQP_URL, DEFAULT_REDIS_URL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
TOKEN = "bench-" + secrets.token_hex(16)  # the service token of the system under test
PER_ACCOUNT = 10  # connections per account, as a real product would have


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def _env_ints(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = os.environ.get(name)
    return tuple(int(x) for x in raw.split(",") if x.strip()) if raw else default


KIB = 1024


@dataclass(frozen=True)
class Plan:
    quick: bool
    rounds: int
    duration_s: float
    rate: int
    concurrency: int
    load_procs: int
    connections: int
    verifier_messages: int
    sweep_pending: int
    sse_streams: int
    sse_fanout: int
    receiver_workers: int
    memory_connections: int
    body_bytes: int  # the webhooks' body size in every row unless a row says otherwise
    big_body_bytes: int
    scaled_connections: int  # the rows "with many connections"
    grow_connections: tuple[int, ...]
    grow_bodies: tuple[int, ...]
    grow_streams: tuple[int, ...]
    grow_duration_s: float
    full_list_connections: int  # connections given a full deliveries list, for memory per connection
    amqp_url: str
    redis_url: str
    prefix: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}")

    @classmethod
    def from_env(cls) -> Plan:
        quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
        return cls(
            quick=quick,
            rounds=_env_int("BENCH_ROUNDS", 1 if quick else 3),
            duration_s=float(os.environ.get("BENCH_DURATION_S") or (2 if quick else 5)),
            rate=_env_int("BENCH_RATE", 1000),
            concurrency=_env_int("BENCH_CONCURRENCY", 64),
            load_procs=_env_int("BENCH_LOAD_PROCS", 2),
            connections=_env_int("BENCH_CONNECTIONS", 1000),
            verifier_messages=_env_int("BENCH_VERIFIER_MESSAGES", 5000 if quick else 20000),
            sweep_pending=_env_int("BENCH_SWEEP_PENDING", 1_000_000),
            sse_streams=_env_int("BENCH_SSE_STREAMS", 10_000),
            sse_fanout=_env_int("BENCH_SSE_FANOUT", 1000),
            # Two receiver processes (one per core) measured best here; the service's default is 1.
            receiver_workers=_env_int("RECEIVER_WORKERS", 2),
            memory_connections=_env_int("BENCH_MEMORY_CONNECTIONS", 200),
            body_bytes=_env_int("BENCH_BODY_BYTES", KIB),
            big_body_bytes=_env_int("BENCH_BIG_BODY_BYTES", 64 * KIB),
            scaled_connections=_env_int("BENCH_SCALED_CONNECTIONS", 100_000),
            grow_connections=_env_ints("BENCH_GROW_CONNECTIONS", (1000, 10_000, 100_000) if quick
                                       else (1000, 10_000, 100_000, 1_000_000)),
            grow_bodies=_env_ints("BENCH_GROW_BODIES", (KIB, 16 * KIB, 64 * KIB, 256 * KIB, 1024 * KIB)),
            grow_streams=_env_ints("BENCH_GROW_STREAMS", (100, 1000) if quick else (100, 1000, 10_000)),
            grow_duration_s=float(os.environ.get("BENCH_GROW_DURATION_S") or (1.5 if quick else 3)),
            full_list_connections=_env_int("BENCH_FULL_LIST_CONNECTIONS", 200),
            amqp_url=os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL,
            redis_url=os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
