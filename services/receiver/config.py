from __future__ import annotations

from dataclasses import dataclass

from shared.config import CommonSettings


@dataclass(frozen=True, slots=True)
class Settings(CommonSettings):
    receiver_host: str = "127.0.0.1"
    receiver_port: int = 8080
    max_body_bytes: int = 1024 * 1024
    # Rejected deliveries per connection: this many at once, then this many a second (over: 429).
    rejected_burst: int = 30
    rejected_per_s: float = 1.0
    # A body that has not fully arrived this long after the headers is cut off with 408.
    body_read_timeout_s: float = 10.0
    # A connection without a complete request (headers still trickling in, or idle between requests)
    # is closed after this long: the receiver faces the internet.
    idle_timeout_s: float = 15.0
