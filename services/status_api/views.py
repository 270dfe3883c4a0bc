"""HTTP handlers of the status API. They parse, authorise, call ``Connections`` and render."""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from services.status_api import analytics, held, schema
from services.status_api import validation as v
from services.status_api.access import visible
from services.status_api.auth import PRINCIPAL, require, require_service, require_service_for
from services.status_api.connections import NewConnection, not_found
from services.status_api.presentation import connection_view
from services.status_api.state import api
from shared.http import json_response
from shared.providers import PROVIDERS, ProviderInfo


async def create_connection(request: web.Request) -> web.Response:
    require_service(request)
    state = api(request)
    settings = state.settings
    data = await v.body(request, schema.NewConnection, limits={"timeout_s": settings.max_timeout_s})
    new = NewConnection(
        account_id=data.account_id,
        provider=data.provider,
        timeout_s=data.timeout_s or settings.default_timeout_s,
        secret=data.secret,
        settings=data.settings,
        expected_interval_s=data.expected_interval_s,
    )
    view = await state.connections.create(new)
    analytics.setup_completed(state.analytics, state.store, view)
    return json_response(view, 201)


async def get_connection(request: web.Request) -> web.Response:
    view = connection_view(await visible(request))
    analytics.status_shown(api(request).analytics, request.get(PRINCIPAL), [view], via="api")
    return json_response(view)


async def list_connections(request: web.Request) -> web.Response:
    principal = require(request)
    account = v.account_id(request.query.get("account_id") or principal.account_id)
    if not principal.can_see(account):
        return json_response({"connections": []})
    records = await api(request).store.list_for_account(account)
    return json_response({"connections": [connection_view(r) for r in records]})


async def reconnect(request: web.Request) -> web.Response:
    record = await visible(request)
    state = api(request)
    limits = {"timeout_s": state.settings.max_timeout_s}
    data = await v.body(request, schema.Reconnect, optional=True, limits=limits)
    if {"secret", "settings"} & data.model_fields_set:
        require_service_for(request, "changing a secret or settings")
    view = await state.connections.reconnect(record, data.secret, data.settings, data.timeout_s)
    if {"secret", "settings"} & data.model_fields_set:
        await held.after_fix(state, record.id)
    analytics.reconnect_requested(state.analytics, state.store, record, data.secret is not None)
    return json_response(view)


async def disconnect(request: web.Request) -> web.Response:
    require_service(request)
    return json_response(await api(request).connections.disconnect(await visible(request)))


async def purge(request: web.Request) -> web.Response:
    """Erase a connection and everything about it, now (service token only): 204."""
    require_service(request)
    record = await visible(request)
    if not await api(request).store.purge(record.id):
        raise not_found()
    return web.Response(status=204)


async def deliveries(request: web.Request) -> web.Response:
    record = await visible(request)
    items = await api(request).store.deliveries(record.id)
    return json_response({"deliveries": items})


async def providers(request: web.Request) -> web.Response:
    """The providers, optionally searched (``?q=``: every word in the id, title or category)."""
    require(request)
    words = request.query.get("q", "")[:100].lower().split()
    found = [p.info for p in PROVIDERS.values() if _matches(p.info, words)]
    return json_response({"providers": [_provider_entry(info) for info in found],
                          "categories": sorted({info.category for info in found})})


def _matches(info: ProviderInfo, words: list[str]) -> bool:
    text = f"{info.name} {info.title} {info.category}".lower()
    return all(word in text for word in words)


def _provider_entry(info: ProviderInfo) -> dict[str, object]:
    entry = asdict(info)
    entry["settings"] = dict(info.settings)
    entry["setup"] = list(info.setup)
    return entry


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/connections", create_connection)
    r.add_get("/v1/connections", list_connections)
    r.add_get("/v1/connections/{connection_id}", get_connection)
    r.add_delete("/v1/connections/{connection_id}", disconnect)
    r.add_post("/v1/connections/{connection_id}/purge", purge)
    r.add_post("/v1/connections/{connection_id}/reconnect", reconnect)
    r.add_get("/v1/connections/{connection_id}/deliveries", deliveries)
    r.add_get("/v1/providers", providers)
