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
    gauges_interval_s: float = 5.0  # how often the shared-state gauges are read from Redis and RabbitMQ

    def validate(self) -> None:
        CommonSettings.validate(self)
        if self.store_retry_max_s <= 0:
            raise ConfigError("STORE_RETRY_MAX_S must be positive (the longest wait between Redis retries)")
