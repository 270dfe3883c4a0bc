from __future__ import annotations

from dataclasses import dataclass

from shared.config import CommonSettings
from shared.errors import ConfigError
from shared.rhythm import RhythmSettings


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
    # Learned silence (shared/rhythm.py): events before it may say silent, the newest gap's weight,
    # standard deviations and times the mean beyond which a gap is silent, and the shortest such gap.
    learned_silence_min_events: int = 20
    learned_silence_weight: float = 0.05
    learned_silence_k: float = 6.0
    learned_silence_factor: float = 8.0
    learned_silence_floor_s: int = 900

    def rhythm(self) -> RhythmSettings:
        return RhythmSettings(self.learned_silence_min_events, self.learned_silence_weight, self.learned_silence_k,
                              self.learned_silence_factor, self.learned_silence_floor_s)

    def validate(self) -> None:
        CommonSettings.validate(self)
        if self.store_retry_max_s <= 0:
            raise ConfigError("STORE_RETRY_MAX_S must be positive (the longest wait between Redis retries)")
        if self.redis_wait_replicas < -1 or self.redis_wait_timeout_ms <= 0:
            raise ConfigError("REDIS_WAIT_REPLICAS must be -1 (auto), 0 or more; REDIS_WAIT_TIMEOUT_MS positive")
        if (self.learned_silence_min_events < 2 or not 0 < self.learned_silence_weight <= 1
                or self.learned_silence_k < 0 or self.learned_silence_factor < 1 or self.learned_silence_floor_s < 1):
            raise ConfigError("LEARNED_SILENCE_MIN_EVENTS must be 2 or more, LEARNED_SILENCE_WEIGHT in (0, 1], "
                              "LEARNED_SILENCE_K 0 or more, LEARNED_SILENCE_FACTOR 1 or more, "
                              "LEARNED_SILENCE_FLOOR_S 1 or more")
