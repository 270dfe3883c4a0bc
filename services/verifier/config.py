from __future__ import annotations

from dataclasses import dataclass

from shared.config import CommonSettings


@dataclass(frozen=True, slots=True)
class Settings(CommonSettings):
    verifier_host: str = "127.0.0.1"
    verifier_port: int = 8082  # /healthz, /readyz and /metrics only
    prefetch: int = 256
    sweep_interval_s: float = 1.0
    sweep_batch: int = 500
    store_retry_max_s: float = 5.0
    gauges_interval_s: float = 5.0  # how often the shared-state gauges are read from Redis and RabbitMQ
