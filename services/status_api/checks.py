"""Test events: a window in which the next verified event (or handshake) proves the connection works.

``POST /v1/connections/{id}/tests`` opens one (``timeout_s``, default 120) and answers with the
provider's instructions for sending a test event. The verifier passes it atomically with the delivery
(``shared/lua/apply_delivery.lua``) and its sweep fails it when the window closes, with what was seen
(``test_no_events``, ``test_bad_signatures``, ``test_stale_timestamps``, ``test_rejected_deliveries``).
Opening a new window replaces an open one (which fails as ``test_superseded``). Every change bumps the
connection's version and is published, so streams show it; the connection carries it as ``last_test``.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from services.status_api import schema
from services.status_api import validation as v
from services.status_api.access import visible
from services.status_api.connections import not_found
from services.status_api.limits import too_many_tests
from services.status_api.presentation import view_of_test
from services.status_api.state import api
from shared.errors import ApiError, NotFound
from shared.http import json_response
from shared.models import new_id, now_ms
from shared.providers import PROVIDERS
from shared.records import ConnectionRecord, TestWindow

TEST_ID = re.compile(r"^[0-9a-f]{32}$")
TEST_WINDOW_MS = 60_000  # TESTS_PER_MINUTE counts in windows this long


def _instructions(provider: str) -> str:
    adapter = PROVIDERS.get(provider)
    return adapter.info.test_instructions if adapter else "Send any signed event to the webhook URL."


def _render(test: TestWindow, connection: ConnectionRecord) -> dict[str, Any]:
    view = view_of_test(test) or {}
    return {**view, "connection_id": connection.id, "instructions": _instructions(connection.provider)}


async def start_test(request: web.Request) -> web.Response:
    record = await visible(request)
    state = api(request)
    settings = state.settings
    data = await v.body(request, schema.NewTest, optional=True, limits={"timeout_s": settings.test_max_timeout_s})
    timeout_s = data.timeout_s or settings.test_default_timeout_s
    test_id = new_id()
    attempts, left_ms = await state.store.count_test_start(record.id, TEST_WINDOW_MS)
    if attempts > settings.tests_per_minute:
        raise too_many_tests(settings.tests_per_minute, left_ms)
    now = now_ms()
    result = await state.store.start_test(record.id, test_id, now, now + timeout_s * 1000, settings.tests_kept)
    if result is None:
        raise not_found()
    if result == "disconnected":
        raise ApiError("the connection is disconnected; reconnect it before testing it",
                       code="connection_disconnected", status=409)
    return json_response(_render(await _test(request, record.id, test_id), record), 201)


async def get_test(request: web.Request) -> web.Response:
    record = await visible(request)
    test_id = request.match_info["test_id"]
    if not TEST_ID.match(test_id):
        raise NotFound("no test has this id", code="test_not_found")
    return json_response(_render(await _test(request, record.id, test_id), record))


async def _test(request: web.Request, cid: str, test_id: str) -> TestWindow:
    test = await api(request).store.get_test(cid, test_id)
    if test is None:
        raise NotFound("no test has this id", code="test_not_found")
    return test


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/connections/{connection_id}/tests", start_test)
    app.router.add_get("/v1/connections/{connection_id}/tests/{test_id}", get_test)
