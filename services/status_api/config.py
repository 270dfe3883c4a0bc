from __future__ import annotations

from dataclasses import dataclass, field

from shared.config import DEV_SERVICE_TOKEN, CommonSettings

# Signs browser tokens; set TOKEN_SIGNING_KEY in production (several, comma-separated, during a rotation:
# the first signs, all verify).
DEV_TOKEN_SIGNING_KEY = "dev-token-signing-key-change-me"


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

    @property
    def uses_dev_token(self) -> bool:
        return DEV_SERVICE_TOKEN in self.status_api_token

    @property
    def uses_dev_signing_key(self) -> bool:
        return DEV_TOKEN_SIGNING_KEY in self.token_signing_key
