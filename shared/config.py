"""Settings read once from the environment, with working local defaults.

Each service has one frozen dataclass (``services.<name>.config.Settings``) built on
``CommonSettings``; nothing reads ``os.environ`` anywhere else.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Self, get_type_hints

from shared.crypto import DEV_SECRETS_KEY, Sealer
from shared.errors import ConfigError

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEV_SERVICE_TOKEN = "dev-service-token-change-me"


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _to_bool(raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError(raw)


def _to_strings(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


# Every type a setting may have, with how its value is read from the environment.
COERCERS: dict[object, Callable[[str], object]] = {
    str: str,
    int: int,
    float: float,
    bool: _to_bool,
    tuple[str, ...]: _to_strings,
}


def _coerce(name: str, raw: str, kind: object) -> object:
    try:
        return COERCERS[kind](raw)
    except ValueError as exc:
        raise ConfigError(f"environment variable {name} has an invalid value") from exc


def setting_types(cls: type) -> dict[str, object]:
    """Each field's real type (annotations resolved, not matched as strings). A field of a type no
    coercer reads is a ``ConfigError`` at start-up, whether or not its variable is set."""
    hints = get_type_hints(cls)
    types: dict[str, object] = {}
    for f in fields(cls):
        kind = hints[f.name]
        if kind not in COERCERS:
            raise ConfigError(
                f"setting {f.name} of {cls.__name__} has type {kind!r}, which cannot be read from the "
                f"environment variable {f.name.upper()}; use one of: str, int, float, bool, tuple[str, ...]"
            )
        types[f.name] = kind
    return types


@dataclass(frozen=True, slots=True)
class CommonSettings:
    """Settings every service reads. Field ``foo_bar`` comes from env ``FOO_BAR``."""

    amqp_url: str = field(default=DEFAULT_AMQP_URL, repr=False)
    # The nodes of one RabbitMQ cluster, comma-separated; when set, it replaces AMQP_URL.
    amqp_urls: tuple[str, ...] = field(default=(), repr=False)
    # Members of each quorum queue; 0 = the number of AMQP_URLS (with one address: the broker's default).
    quorum_group_size: int = 0
    redis_url: str = field(default=DEFAULT_REDIS_URL, repr=False)
    # Prefixes isolate one deployment (or one test) from another on shared servers.
    redis_prefix: str = "whs"
    amqp_prefix: str = "whs"
    analytics_exchange: str = "analytics"
    public_base_url: str = "http://127.0.0.1:8080"
    log_level: str = "INFO"
    # One log line per accepted webhook (receiver) and per handled delivery (verifier), to follow one
    # webhook across services by its delivery_id. Off: one summary line a second instead (rejections,
    # state changes and dead letters are always logged one by one).
    log_each_delivery: bool = False
    publish_timeout_s: float = 5.0
    # SECRETS_KEYS: the keys that encrypt secrets at rest, ``kid:base64 key`` comma-separated (the first
    # encrypts, all decrypt; shared/crypto.py). The development key when unset: each service says so.
    secrets_keys: tuple[str, ...] = field(default=(DEV_SECRETS_KEY,), repr=False)

    @property
    def uses_dev_secrets_key(self) -> bool:
        return DEV_SECRETS_KEY in self.secrets_keys

    def sealer(self) -> Sealer:
        return Sealer(self.secrets_keys)

    @property
    def amqp_addresses(self) -> tuple[str, ...]:
        """Where RabbitMQ is: the nodes of ``AMQP_URLS``, else ``AMQP_URL``."""
        return self.amqp_urls or (self.amqp_url,)

    @property
    def quorum_members(self) -> int:
        """The quorum queues' ``x-quorum-initial-group-size`` (0: leave it to the broker)."""
        if self.quorum_group_size:
            return self.quorum_group_size
        return len(self.amqp_urls) if len(self.amqp_urls) > 1 else 0

    @classmethod
    def from_env(cls, **overrides: Any) -> Self:
        """Build from the environment; ``overrides`` win (tests and tools use them)."""
        values: dict[str, Any] = {}
        for name, kind in setting_types(cls).items():
            raw = _env(name.upper())
            if raw is not None:
                values[name] = _coerce(name.upper(), raw, kind)
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        redis_schemes = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
        for url_field, schemes in (("amqp_url", ("amqp", "amqps")), ("redis_url", redis_schemes)):
            value = getattr(self, url_field)
            if value.split("://", 1)[0] not in schemes:
                raise ConfigError(f"{url_field.upper()} must start with one of {', '.join(schemes)}://")
        if any(url.split("://", 1)[0] not in ("amqp", "amqps") for url in self.amqp_urls):
            raise ConfigError("every address of AMQP_URLS must start with amqp:// or amqps://")
        if self.quorum_group_size < 0:
            raise ConfigError("QUORUM_GROUP_SIZE must be 0 (the number of AMQP_URLS) or positive")
        if not self.public_base_url.startswith(("http://", "https://")):
            raise ConfigError("PUBLIC_BASE_URL must be an absolute http(s) URL")
        self.sealer()  # ConfigError when SECRETS_KEYS is not a list of valid keys
