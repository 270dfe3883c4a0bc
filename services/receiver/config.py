from __future__ import annotations

from dataclasses import dataclass

from shared.config import CommonSettings


@dataclass(frozen=True, slots=True)
class Settings(CommonSettings):
    receiver_host: str = "127.0.0.1"
    receiver_port: int = 8080
    max_body_bytes: int = 1024 * 1024
