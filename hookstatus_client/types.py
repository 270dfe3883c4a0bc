"""The shapes the API returns (see docs/API.md). Timestamps are ISO 8601 UTC strings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

State = Literal["pending", "connected", "failed", "disconnected"]
Display = Literal["connected", "pending", "failing", "silent", "failed", "disconnected"]


class Cta(TypedDict):
    label: str
    action: str | None
    secondary: str | None
    secondary_action: str | None
    hint: str | None


class ConnectionTest(TypedDict):
    id: str
    state: Literal["waiting", "passed", "failed"]
    reason: str | None
    reason_message: str | None
    seen: dict[str, int]
    started_at: str | None
    expires_at: str | None
    finished_at: str | None
    connection_id: NotRequired[str]
    instructions: NotRequired[str]


class LastError(TypedDict):
    code: str
    message: str
    at: str | None


class Connection(TypedDict):
    id: str
    account_id: str
    provider: str
    state: State
    display: Display
    reason: str | None
    reason_message: str | None
    health: Literal["ok", "failing", "silent"] | None
    cta: Cta
    last_test: ConnectionTest | None
    webhook_url: str
    pending_deadline: str | None
    created_at: str | None
    updated_at: str | None
    last_event_at: str | None
    events_received: int
    last_error: LastError | None
    previous_secret_active: bool
    previous_secret_last_used_at: str | None
    version: int
    secret: NotRequired[str]  # only in the answer to create


class BrowserToken(TypedDict):
    token: str
    expires_at: str
    account_id: str


class Delivery(TypedDict):
    id: str
    at: str
    outcome: Literal["verified", "rejected"]
    reason: str | None
    message: str | None
    event_id: str | None
    event_type: str | None
    is_test: bool
    handshake: bool


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of a status stream. ``event`` is ``connection`` (``data`` is a ``Connection``),
    ``ready`` (the initial state has been sent) or ``token_expired``."""

    event: str
    id: str | None
    data: Any

    @property
    def connection(self) -> Connection:
        if self.event != "connection":
            raise ValueError(f"a {self.event!r} event carries no connection")
        return self.data  # type: ignore[no-any-return]
