"""Creating, reading, reconnecting and disconnecting connections: the rules, apart from HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from services.status_api.config import Settings
from shared.errors import BadRequest, NotFound, SettingsError
from shared.models import connection_view, new_id, now_ms
from shared.providers import Provider, get_provider
from shared.store import Store


@dataclass(frozen=True, slots=True)
class NewConnection:
    account_id: str
    provider: str
    timeout_s: int
    secret: str | None
    settings: dict[str, Any] | None
    expected_interval_s: int | None = None


def _checked(provider: Provider, secret: str | None, settings: dict[str, Any] | None) -> tuple[str | None, str]:
    try:
        checked_secret = provider.validate_secret(secret) if secret is not None else None
        checked_settings = provider.validate_settings(settings or {})
    except SettingsError as exc:
        code = "invalid_secret" if exc.field == "secret" else "invalid_settings"
        raise BadRequest(exc.message, code=code) from None
    return checked_secret, orjson.dumps(checked_settings).decode()


class Connections:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def webhook_url(self, cid: str) -> str:
        return f"{self.settings.public_base_url.rstrip('/')}/hooks/{cid}"

    async def create(self, new: NewConnection) -> dict[str, Any]:
        provider = get_provider(new.provider)
        secret, settings_json = _checked(provider, new.secret, new.settings)
        secret = secret or provider.generate_secret()
        cid, now = new_id(), now_ms()
        fields: dict[str, Any] = {
            "id": cid,
            "account_id": new.account_id,
            "provider": provider.name,
            "state": "pending",
            "reason": "awaiting_first_event",
            "secret": secret,
            "settings": settings_json,
            "webhook_url": self.webhook_url(cid),
            "pending_deadline": now + new.timeout_s * 1000,
            "timeout_s": new.timeout_s,
            "created_at": now,
            "updated_at": now,
            "events_received": 0,
            "version": 1,
            "seen": "{}",
        }
        if new.expected_interval_s:
            fields["expected_interval_s"] = new.expected_interval_s
        await self.store.create(fields)
        view = connection_view({k: str(v) for k, v in fields.items()}, now)
        view["secret"] = secret
        return view

    async def get_raw(self, cid: str) -> dict[str, str]:
        raw = await self.store.get(cid) if _plausible_id(cid) else None
        if raw is None:
            raise NotFound("no connection has this id", code="connection_not_found")
        return raw

    async def reconnect(
        self, raw: dict[str, str], secret: str | None, settings: dict[str, Any] | None, timeout_s: int | None
    ) -> dict[str, Any]:
        provider = get_provider(raw["provider"])
        # Without new settings the stored ones stay (Meta's verify token while only the secret changes).
        kept = orjson.loads(raw.get("settings") or "{}") if settings is None else settings
        checked_secret, settings_json = _checked(provider, secret, kept)
        now = now_ms()
        timeout = timeout_s or int(raw.get("timeout_s") or self.settings.default_timeout_s)
        before = await self.store.reconnect(
            raw["id"],
            now,
            now + timeout * 1000,
            checked_secret,
            now + self.settings.rotation_window_s * 1000,
            settings_json if settings is not None else None,
        )
        if before is None:
            raise NotFound("no connection has this id", code="connection_not_found")
        return connection_view(await self.get_raw(raw["id"]))

    async def disconnect(self, raw: dict[str, str]) -> dict[str, Any]:
        now = now_ms()
        await self.store.disconnect(raw["id"], now, now + self.settings.disconnected_retention_s * 1000)
        return connection_view(await self.get_raw(raw["id"]))


def _plausible_id(cid: str) -> bool:
    return len(cid) == 32 and all(c in "0123456789abcdef" for c in cid)
