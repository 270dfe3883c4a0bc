from __future__ import annotations

from dataclasses import dataclass

from shared.config import CommonSettings
from shared.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Settings(CommonSettings):
    notifier_host: str = "127.0.0.1"
    notifier_port: int = 8084  # /healthz, /readyz and /metrics only
    # The waits before the 2nd, 3rd, ... attempt of one event at one endpoint (one delay queue each).
    notifier_retry_delays_s: str = "5,30,120,600,3600"
    notifier_timeout_s: float = 10.0  # one POST to an endpoint, connect to last byte
    # An endpoint is disabled after this many events in a row that failed every attempt, or when it
    # has failed every attempt for this long.
    notifier_disable_after_failures: int = 5
    notifier_disable_after_s: int = 3 * 24 * 3600
    # Outbound calls refuse private and link-local addresses, and loopback, unless allowed here.
    notifier_allow_private: bool = False
    notifier_allow_loopback: bool = False
    notifier_relay_interval_s: float = 0.2  # how often the outbox index is read
    notifier_relay_batch: int = 100
    notifier_relay_lease_s: float = 30.0  # a connection claimed by a relay that died is retried after this
    notifier_prefetch: int = 32
    notifier_gauges_interval_s: float = 5.0

    @property
    def retry_delays_ms(self) -> tuple[int, ...]:
        return tuple(int(float(part) * 1000) for part in self.notifier_retry_delays_s.split(",") if part.strip())

    @property
    def max_attempts(self) -> int:
        return len(self.retry_delays_ms) + 1

    def validate(self) -> None:
        CommonSettings.validate(self)
        try:
            delays = self.retry_delays_ms
        except ValueError:
            raise ConfigError("NOTIFIER_RETRY_DELAYS_S must be comma-separated seconds") from None
        if any(d < 1 for d in delays) or len(set(delays)) != len(delays):
            raise ConfigError("NOTIFIER_RETRY_DELAYS_S must be distinct positive seconds")
        if self.notifier_timeout_s <= 0 or self.notifier_relay_interval_s <= 0 or self.notifier_relay_batch < 1:
            raise ConfigError("NOTIFIER_TIMEOUT_S and NOTIFIER_RELAY_INTERVAL_S must be positive, "
                              "NOTIFIER_RELAY_BATCH at least 1")
        if self.notifier_disable_after_failures < 1 or self.notifier_disable_after_s < 1:
            raise ConfigError("NOTIFIER_DISABLE_AFTER_FAILURES and NOTIFIER_DISABLE_AFTER_S must be positive")
