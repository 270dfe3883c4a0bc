"""The product's notifications: the event types, and the body every endpoint receives.

A body is ``{"type", "timestamp", "data"}``: ``data`` is the connection's status object (as
``GET /v1/connections/{id}`` returns it) for ``connection.*`` events, the test object (as
``GET /v1/connections/{id}/tests/{test_id}`` returns it, with ``account_id``) for ``test.*`` events.
It is built when the relay publishes the event, from the connection as stored then.
"""

from __future__ import annotations

from typing import Any

import orjson

from shared.models import connection_view, iso, view_of_test

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


def event_data(kind: str, raw: dict[str, str]) -> dict[str, Any] | None:
    """The ``data`` of an event of type ``kind`` about the stored connection ``raw``."""
    if not kind.startswith("test."):
        return connection_view(raw)
    test = view_of_test(raw)
    if test is None:
        return None
    return {**test, "connection_id": raw["id"], "account_id": raw["account_id"]}


def event_body(entry: dict[str, Any], raw: dict[str, str]) -> bytes | None:
    """The JSON body of one outbox entry (``{"id", "type", "at"}``), or None when it has no data."""
    data = event_data(entry["type"], raw)
    if data is None:
        return None
    return orjson.dumps({"type": entry["type"], "timestamp": iso(entry.get("at")), "data": data})


def account_of(body: dict[str, Any]) -> str | None:
    data = body.get("data")
    return data.get("account_id") if isinstance(data, dict) else None
