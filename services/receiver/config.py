from __future__ import annotations

from dataclasses import dataclass

from shared.config import CommonSettings
from shared.errors import ConfigError
from shared.held import HeldLimits, check_max_age


@dataclass(frozen=True, slots=True)
class Settings(CommonSettings):
    receiver_host: str = "127.0.0.1"
    receiver_port: int = 8080
    # The admin listener: /metrics and the detailed /readyz, never on the provider-facing port.
    receiver_admin_host: str = "127.0.0.1"
    receiver_admin_port: int = 8083
    max_body_bytes: int = 1024 * 1024
    # Processes serving the port (SO_REUSEPORT); each has its own cache and connections.
    receiver_workers: int = 1
    # Connection targets cached per process, evicted by the changes channel; the TTL is a safety net.
    target_cache_ttl_s: float = 60.0
    target_cache_size: int = 100_000
    # A body that has not fully arrived this long after the headers is cut off with 408.
    body_read_timeout_s: float = 10.0
    # A connection without a complete request (headers still trickling in, or idle between requests)
    # is closed after this long: the receiver faces the internet.
    idle_timeout_s: float = 15.0
    # Rejected deliveries per connection: this many at once, then this many a second (over: 429).
    rejected_burst: int = 30
    rejected_per_s: float = 1.0
    # Handshakes answered per connection: this many at once, then one a minute (over: 429). Providers
    # send a handshake when the URL is registered and seldom after (X's CRC about hourly).
    handshake_burst: int = 5
    handshake_per_s: float = 1 / 60
    # Load shedding (shedding.py): a new webhook is answered 503 ``overloaded`` (with Retry-After), before
    # its body is read or verified, while this process has this many webhooks admitted and not answered
    # yet (waiting for the broker's confirm, mostly), or while its oldest unconfirmed publish has waited
    # this long. 0 turns a bound off.
    shed_in_flight: int = 256
    shed_confirm_wait_s: float = 1.0

    # Rejected requests held (sealed) to verify again after a fix: per connection this many and bytes,
    # in total these bytes, each at most this long; the oldest go first (shared/held.py).
    held_max_per_connection: int = 20
    held_max_bytes_per_connection: int = 2 * 1024 * 1024
    held_max_total_bytes: int = 256 * 1024 * 1024
    held_max_age_s: int = 24 * 3600
    # After a signature mismatch, the secrets of at most this many other connections of the same account
    # and provider are tried (secret_of_other_connection); 0 turns it off.
    other_secret_candidates: int = 5

    @property
    def held_limits(self) -> HeldLimits:
        return HeldLimits(self.held_max_per_connection, self.held_max_bytes_per_connection,
                          self.held_max_total_bytes, self.held_max_age_s)

    def validate(self) -> None:
        CommonSettings.validate(self)
        if self.shed_in_flight < 0 or self.shed_confirm_wait_s < 0:
            raise ConfigError("SHED_IN_FLIGHT and SHED_CONFIRM_WAIT_S must be 0 (off) or positive")
        if min(self.held_max_per_connection, self.held_max_bytes_per_connection, self.held_max_total_bytes,
               self.held_max_age_s) < 0 or self.other_secret_candidates < 0:
            raise ConfigError("HELD_MAX_* and OTHER_SECRET_CANDIDATES must be 0 or more")
        check_max_age(self.held_max_age_s)
