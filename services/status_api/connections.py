"""Creating, reading, reconnecting and disconnecting connections: the rules, apart from HTTP."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from services.status_api.config import Settings
from services.status_api.presentation import connection_view
from shared.errors import BadRequest, NotFound, SettingsError
from shared.models import new_id, now_ms
from shared.providers import Provider, get_provider
from shared.records import ConnectionRecord
from shared.store import Store

NO_CONNECTION = "no connection has this id"


@dataclass(frozen=True, slots=True)
class NewConnection:
    account_id: str
    provider: str
    timeout_s: int
    secret: str | None
    settings: dict[str, Any] | None
    expected_interval_s: int | None = None


def _checked(
    provider: Provider, secret: str | None, settings: dict[str, Any] | None
) -> tuple[str | None, dict[str, Any]]:
    try:
        checked_secret = provider.validate_secret(secret) if secret is not None else None
        checked_settings = provider.validate_settings(settings or {})
    except SettingsError as exc:
        code = "invalid_secret" if exc.field == "secret" else "invalid_settings"
        raise BadRequest(exc.message, code=code) from None
    return checked_secret, checked_settings


def not_found() -> NotFound:
    return NotFound(NO_CONNECTION, code="connection_not_found")


class Connections:
    def __init__(self, store: Store, settings: Settings, reads: Store | None = None) -> None:
        self.store = store
        self.reads = reads or store  # for a status only (``get(opened=False)``)
        self.settings = settings

    def webhook_url(self, cid: str) -> str:
        return f"{self.settings.public_base_url.rstrip('/')}/hooks/{cid}"

    async def create(self, new: NewConnection) -> dict[str, Any]:
        provider = get_provider(new.provider)
        secret, settings = _checked(provider, new.secret, new.settings)
        secret = secret or provider.generate_secret()
        cid, now = new_id(), now_ms()
        record = ConnectionRecord(
            id=cid,
            account_id=new.account_id,
            provider=provider.name,
            state="pending",
            reason="awaiting_first_event",
            secret=secret,
            settings=settings,
            webhook_url=self.webhook_url(cid),
            pending_deadline_ms=now + new.timeout_s * 1000,
            timeout_s=new.timeout_s,
            created_at_ms=now,
            updated_at_ms=now,
            version=1,
            expected_interval_s=new.expected_interval_s or 0,
        )
        await self.store.create(record)
        view = connection_view(record, now)
        view["secret"] = secret
        return view

    async def get(self, cid: str, *, opened: bool = True) -> ConnectionRecord:
        store = self.store if opened else self.reads
        record = await store.get(cid, opened=opened) if _plausible_id(cid) else None
        if record is None:
            raise not_found()
        return record

    async def reconnect(
        self, record: ConnectionRecord, secret: str | None, settings: dict[str, Any] | None, timeout_s: int | None
    ) -> dict[str, Any]:
        provider = get_provider(record.provider)
        # Without new settings the stored ones stay (Meta's verify token while only the secret changes).
        kept = record.settings if settings is None else settings
        checked_secret, checked_settings = _checked(provider, secret, kept)
        now = now_ms()
        timeout = timeout_s or record.timeout_s or self.settings.default_timeout_s
        before = await self.store.reconnect(
            record.id,
            now,
            now + timeout * 1000,
            checked_secret,
            now + self.settings.rotation_window_s * 1000,
            checked_settings if settings is not None else None,
        )
        if before is None:
            raise not_found()
        return connection_view(await self.get(record.id))

    async def disconnect(self, record: ConnectionRecord) -> dict[str, Any]:
        now = now_ms()
        await self.store.disconnect(record.id, now, now + self.settings.disconnected_retention_s * 1000)
        return connection_view(await self.get(record.id))


_ID = re.compile(r"[0-9a-f]{32}")


def _plausible_id(cid: str) -> bool:
    return _ID.fullmatch(cid) is not None
