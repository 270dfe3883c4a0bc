from __future__ import annotations

from dataclasses import dataclass, field

from services.status_api.token_codec import signing_keys
from shared.addresses import AddressPolicy
from shared.config import DEV_SERVICE_TOKEN, CommonSettings
from shared.errors import ConfigError
from shared.held import HeldLimits, check_max_age

# Signs browser tokens; set TOKEN_SIGNING_KEY in production (several, comma-separated, during a rotation:
# the first signs, all verify).
DEV_TOKEN_SIGNING_KEY = "dev-token-signing-key-change-me-in-production"


@dataclass(frozen=True, slots=True)
class Settings(CommonSettings):
    status_api_host: str = "127.0.0.1"
    status_api_port: int = 8081
    # STATUS_API_TOKEN: one or more service tokens, comma-separated (several during a rotation).
    status_api_token: tuple[str, ...] = field(default=(DEV_SERVICE_TOKEN,), repr=False)
    default_timeout_s: int = 600
    max_timeout_s: int = 30 * 24 * 3600
    # After a reconnect with a new secret, the previous one still verifies for this long.
    rotation_window_s: int = 24 * 3600
    token_signing_key: tuple[str, ...] = field(default=(DEV_TOKEN_SIGNING_KEY,), repr=False)
    browser_token_ttl_s: int = 15 * 60
    browser_token_max_ttl_s: int = 3600
    sse_heartbeat_s: float = 15.0
    sse_queue_size: int = 256  # per stream; a stream that falls this far behind is dropped
    sse_write_timeout_s: float = 10.0
    test_default_timeout_s: int = 120
    test_max_timeout_s: int = 3600
    analytics_queue_size: int = 10_000
    # The same status shown again to the same browser token within this long is not another view (0: every
    # read is one).
    analytics_view_repeat_s: float = 60.0
    # Notification endpoint URLs with a literal loopback or private address are refused unless allowed
    # (the same settings as the notifier's).
    notifier_allow_private: bool = False
    notifier_allow_loopback: bool = False

    # Limits (429 with a reason code and Retry-After; docs/API.md).
    max_streams_per_token: int = 5  # open streams of one browser token (per process)
    max_streams_per_account: int = 100  # open streams of one account's browser tokens (per process)
    tests_per_minute: int = 10  # test windows opened per connection per minute
    # Re-verifications of one connection's held requests per minute asked by browser tokens (POST
    # .../reverify, and a reconnect with a new secret): each opens and checks up to 2 MiB of requests.
    reverifies_per_minute: int = 10
    tests_kept: int = 20  # replaced test windows kept readable per connection
    # A browser token with a create grant creates at most its create_limit connections, which may be
    # at most this; and no browser token creates one in an account that already has this many.
    max_creates_per_token: int = 10
    max_connections_per_account: int = 200
    # A disconnected connection is purged (erased, and dropped from its account's list) after this long.
    disconnected_retention_s: int = 30 * 24 * 3600
    # Held requests older than this are not verified again nor listed (the receiver's HELD_MAX_AGE_S).
    held_max_age_s: int = 24 * 3600

    @property
    def held_limits(self) -> HeldLimits:
        """The status API lists, verifies again and drops held requests; only the receiver holds them."""
        return HeldLimits(per_connection=0, per_connection_bytes=0, total_bytes=0, max_age_s=self.held_max_age_s)

    @property
    def notify_address_policy(self) -> AddressPolicy:
        return AddressPolicy(self.notifier_allow_private, self.notifier_allow_loopback)

    @property
    def uses_dev_token(self) -> bool:
        return DEV_SERVICE_TOKEN in self.status_api_token

    @property
    def uses_dev_signing_key(self) -> bool:
        return DEV_TOKEN_SIGNING_KEY in self.token_signing_key

    def validate(self) -> None:
        CommonSettings.validate(self)
        signing_keys(self.token_signing_key)  # ConfigError when the list is empty or a key is short
        if not 1 <= self.browser_token_ttl_s <= self.browser_token_max_ttl_s:
            raise ConfigError("BROWSER_TOKEN_TTL_S must be from 1 to BROWSER_TOKEN_MAX_TTL_S")
        check_max_age(self.held_max_age_s)
        if self.sse_heartbeat_s <= 0 or self.sse_write_timeout_s <= 0 or self.sse_queue_size < 1:
            raise ConfigError("SSE_HEARTBEAT_S and SSE_WRITE_TIMEOUT_S must be positive, SSE_QUEUE_SIZE at least 1")
        if (not 1 <= self.test_default_timeout_s <= self.test_max_timeout_s or self.analytics_queue_size < 1
                or self.analytics_view_repeat_s < 0):
            raise ConfigError("TEST_DEFAULT_TIMEOUT_S must be from 1 to TEST_MAX_TIMEOUT_S, "
                              "ANALYTICS_QUEUE_SIZE at least 1, ANALYTICS_VIEW_REPEAT_S not negative")
        if min(self.max_streams_per_token, self.max_streams_per_account, self.tests_per_minute,
               self.reverifies_per_minute, self.tests_kept, self.disconnected_retention_s, self.max_creates_per_token,
               self.max_connections_per_account) < 1:
            raise ConfigError("MAX_STREAMS_PER_TOKEN, MAX_STREAMS_PER_ACCOUNT, TESTS_PER_MINUTE, "
                              "REVERIFIES_PER_MINUTE, TESTS_KEPT, "
                              "DISCONNECTED_RETENTION_S, MAX_CREATES_PER_TOKEN and MAX_CONNECTIONS_PER_ACCOUNT "
                              "must be at least 1")
