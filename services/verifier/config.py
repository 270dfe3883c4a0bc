from __future__ import annotations

from dataclasses import dataclass

from shared.config import CommonSettings
from shared.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Settings(CommonSettings):
    verifier_host: str = "127.0.0.1"
    verifier_port: int = 8082  # /healthz, /readyz and /metrics only
    prefetch: int = 256
    sweep_interval_s: float = 1.0
    sweep_batch: int = 500
    store_retry_max_s: float = 5.0
    gauges_interval_s: float = 5.0
    # Replicas that must confirm a delivery's effect before it is acked (WAIT); -1: 1 on a Redis Cluster
    # whose every primary has a replica, else 0. A bounded wait: past the timeout the delivery is retried.
    redis_wait_replicas: int = -1
    redis_wait_timeout_ms: int = 500  # how often the shared-state gauges are read from Redis and RabbitMQ

    def validate(self) -> None:
        CommonSettings.validate(self)
        if self.store_retry_max_s <= 0:
            raise ConfigError("STORE_RETRY_MAX_S must be positive (the longest wait between Redis retries)")
        if self.redis_wait_replicas < -1 or self.redis_wait_timeout_ms <= 0:
            raise ConfigError("REDIS_WAIT_REPLICAS must be -1 (auto), 0 or more; REDIS_WAIT_TIMEOUT_MS positive")
