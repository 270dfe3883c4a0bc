from __future__ import annotations

from dataclasses import dataclass, field

from shared.config import DEV_SERVICE_TOKEN, CommonSettings


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

    @property
    def uses_dev_token(self) -> bool:
        return DEV_SERVICE_TOKEN in self.status_api_token
