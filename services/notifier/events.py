"""The body every notification endpoint receives: ``{"type", "timestamp", "data"}``.

``data`` is the connection's status object (as ``GET /v1/connections/{id}`` returns it) for
``connection.*`` events, the test object (as ``GET /v1/connections/{id}/tests/{test_id}`` returns it,
with ``account_id``) for ``test.*`` events: the status API's own public objects
(``services/status_api/presentation.py``). It is built when the relay publishes the event, from the
connection as stored then.
"""

from __future__ import annotations

from typing import Any

import orjson

from services.status_api.presentation import connection_view, view_of_test
from shared.models import iso
from shared.records import ConnectionRecord


def event_data(kind: str, record: ConnectionRecord) -> dict[str, Any] | None:
    """The ``data`` of an event of type ``kind`` about the stored connection."""
    if not kind.startswith("test."):
        return connection_view(record)
    test = view_of_test(record.test)
    if test is None:
        return None
    return {**test, "connection_id": record.id, "account_id": record.account_id}


def event_body(entry: dict[str, Any], record: ConnectionRecord) -> bytes | None:
    """The JSON body of one outbox entry (``{"id", "type", "at"}``), or None when it has no data."""
    data = event_data(entry["type"], record)
    if data is None:
        return None
    return orjson.dumps({"type": entry["type"], "timestamp": iso(entry.get("at")), "data": data})
