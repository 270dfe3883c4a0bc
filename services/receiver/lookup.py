"""What the receiver needs to know about a connection to verify a request for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.store import Store

FIELDS = ("provider", "state", "secret", "prev_secret", "prev_secret_until", "settings", "webhook_url")


@dataclass(frozen=True, slots=True)
class ConnectionTarget:
    connection_id: str
    provider: str
    state: str
    webhook_url: str
    secret: str = field(repr=False)
    previous_secret: str | None = field(default=None, repr=False)
    # A previous secret whose rotation window has ended: never verifies, only explains a failure.
    retired_secret: str | None = field(default=None, repr=False)
    settings: dict[str, Any] = field(default_factory=dict)

    def secrets(self) -> tuple[str, str | None]:
        return self.secret, self.previous_secret


async def load_target(store: Store, cid: str, now: int) -> ConnectionTarget | None:
    values = await store.get_fields(cid, FIELDS)
    provider, state, secret, prev, prev_until, settings, url = values
    if provider is None or state is None:
        return None
    previous = prev if prev and int(prev_until or 0) > now else None
    return ConnectionTarget(
        connection_id=cid,
        provider=provider,
        state=state,
        webhook_url=url or "",
        secret=secret or "",
        previous_secret=previous,
        retired_secret=prev if prev and previous is None else None,
        settings=orjson.loads(settings) if settings else {},
    )
