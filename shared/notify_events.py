"""The product's notifications: the event types every part agrees on (the status API validates
subscriptions against them, the transition scripts write them, the notifier sends them). The body of
an event is built by the notifier (``services/notifier/events.py``)."""

from __future__ import annotations

from typing import Any

EVENT_TYPES: tuple[str, ...] = (
    "connection.connected",
    "connection.failed",
    "connection.recovered",
    "connection.failing",
    "connection.silent",
    "connection.disconnected",
    "connection.reachable",
    "test.passed",
    "test.failed",
)


def account_of(body: dict[str, Any]) -> str | None:
    """The account an event's body is about (its ``data.account_id``)."""
    data = body.get("data")
    return data.get("account_id") if isinstance(data, dict) else None
