"""Notification endpoints: where the product receives its operational webhooks (``connection.failed``
and the others, docs/API.md). Service token only; a browser token gets 403 ``service_token_required``.

The secret (``whsec_...``, Standard Webhooks) is shown once, in the creation's answer. A URL whose host
is a literal loopback, private or link-local address is refused here (unless the notifier's settings
allow it); a host name is checked by the notifier each time it resolves it.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from services.status_api import validation as v
from services.status_api.auth import require
from services.status_api.schema import NewNotificationEndpoint
from services.status_api.state import api
from shared.addresses import check_endpoint_url
from shared.errors import ApiError, BadRequest, NotFound
from shared.http import json_response
from shared.models import new_id, now_ms
from shared.notify_events import EVENT_TYPES
from shared.notify_store import endpoint_view
from shared.webhook_signing import new_secret

ENDPOINT_ID = re.compile(r"^[0-9a-f]{32}$")


def require_service_token(request: web.Request) -> None:
    if require(request).kind != "service":
        raise ApiError("notification endpoints need the service token", code="service_token_required", status=403)


def _events(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    unknown = sorted(set(values) - set(EVENT_TYPES))
    if unknown:
        raise BadRequest(f"unknown event type(s); known: {', '.join(EVENT_TYPES)}", code="unknown_event_type")
    return [kind for kind in EVENT_TYPES if kind in values]


async def _endpoint(request: web.Request) -> dict[str, str]:
    eid = request.match_info["endpoint_id"]
    raw = await api(request).notify.get_endpoint(eid) if ENDPOINT_ID.match(eid) else None
    if raw is None:
        raise NotFound("no notification endpoint has this id", code="endpoint_not_found")
    return raw


async def create_endpoint(request: web.Request) -> web.Response:
    require_service_token(request)
    data = await v.body(request, NewNotificationEndpoint)
    url = check_endpoint_url(data.url, api(request).settings.notify_address_policy)
    events = _events(data.events)
    fields: dict[str, Any] = {
        "id": new_id(),
        "url": url,
        "account_id": data.account_id or "",
        "events": orjson.dumps(events).decode() if events is not None else "",
        "secret": new_secret(),
        "status": "enabled",
        "created_at": now_ms(),
        "failed_events": 0,
    }
    await api(request).notify.create_endpoint(fields)
    view = endpoint_view({k: str(value) for k, value in fields.items()})
    return json_response({**view, "secret": fields["secret"]}, 201)


async def list_endpoints(request: web.Request) -> web.Response:
    require_service_token(request)
    account = request.query.get("account_id")
    rows = await api(request).notify.list_endpoints(v.account_id(account) if account is not None else None)
    return json_response({"endpoints": [endpoint_view(raw) for raw in rows]})


async def get_endpoint(request: web.Request) -> web.Response:
    require_service_token(request)
    return json_response(endpoint_view(await _endpoint(request)))


async def delete_endpoint(request: web.Request) -> web.Response:
    require_service_token(request)
    await api(request).notify.delete_endpoint(await _endpoint(request))
    return web.Response(status=204)


async def enable_endpoint(request: web.Request) -> web.Response:
    """Enable an endpoint the notifier disabled (or any endpoint): its failure count starts again from 0.
    Events that came meanwhile were skipped for it and are not sent again."""
    require_service_token(request)
    raw = await _endpoint(request)
    if not await api(request).notify.enable(raw["id"]):
        raise NotFound("no notification endpoint has this id", code="endpoint_not_found")
    return json_response(endpoint_view(await _endpoint(request)))


async def attempts(request: web.Request) -> web.Response:
    require_service_token(request)
    raw = await _endpoint(request)
    return json_response({"attempts": await api(request).notify.attempts(raw["id"])})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/notification-endpoints", create_endpoint)
    r.add_get("/v1/notification-endpoints", list_endpoints)
    r.add_get("/v1/notification-endpoints/{endpoint_id}", get_endpoint)
    r.add_delete("/v1/notification-endpoints/{endpoint_id}", delete_endpoint)
    r.add_get("/v1/notification-endpoints/{endpoint_id}/attempts", attempts)
    r.add_post("/v1/notification-endpoints/{endpoint_id}/enable", enable_endpoint)
