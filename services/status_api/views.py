"""HTTP handlers of the status API. They parse, authorise, call ``Connections`` and render."""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from services.status_api import analytics, held, schema
from services.status_api import validation as v
from services.status_api.access import visible
from services.status_api.auth import PRINCIPAL, Principal, require, require_service, require_service_for
from services.status_api.connections import NewConnection, not_found
from services.status_api.presentation import connection_view, shown
from services.status_api.state import api
from services.status_api.token_codec import CLOCK_SKEW_S
from shared.errors import ApiError, NotFound
from shared.http import json_body_response, json_response
from shared.models import now_ms
from shared.providers import PROVIDERS, ProviderInfo
from shared.records import ConnectionRecord


async def create_connection(request: web.Request) -> web.Response:
    """Create a connection: the service token, or a browser token with a create grant (its account only,
    its providers only, at most its limit, and not in an account that already has too many)."""
    principal = require(request)
    if principal.kind != "service" and principal.create is None:
        raise ApiError("this browser token may not create connections; the product mints one that may "
                       "(a create grant) for its setup flow", code="create_not_allowed", status=403)
    state = api(request)
    settings = state.settings
    data = await v.body(request, schema.NewConnection, limits={"timeout_s": settings.max_timeout_s})
    if principal.kind == "service":
        return json_response(await _create(request, data), 201)
    assert principal.token_id is not None
    await _count_browser_create(request, principal, data)
    try:
        view = await _create(request, data)
    except ApiError:
        await state.store.uncount_token_create(principal.token_id)  # nothing was created
        raise
    # This token may set the new connection's secret and settings until its first verified event.
    await state.store.remember_token_created(principal.token_id, str(view["id"]), _token_lifetime_ms(principal))
    return json_response(view, 201)


def _token_lifetime_ms(principal: Principal) -> int:
    now = now_ms()
    return (principal.expires_at_ms or now) - now + CLOCK_SKEW_S * 1000


async def _count_browser_create(request: web.Request, principal: Principal, data: schema.NewConnection) -> None:
    grant, token_id, account = principal.create, principal.token_id, principal.account_id
    assert grant is not None and token_id is not None and account is not None
    if not principal.can_see(data.account_id):
        raise NotFound("no account of this token has this id", code="account_not_found")
    if not grant.allows(data.provider):
        raise ApiError(f"this token may not create {data.provider!r} connections", code="provider_not_allowed",
                       status=403)
    state = api(request)
    if await state.store.account_size(account) >= state.settings.max_connections_per_account:
        raise ApiError(f"the account already has {state.settings.max_connections_per_account} connections; "
                       "the product must create more itself", code="too_many_connections", status=403)
    if await state.store.count_token_create(token_id, _token_lifetime_ms(principal)) > grant.limit:
        raise ApiError(f"this token has created the {grant.limit} connection(s) it may; the product mints a "
                       "new one for another setup", code="create_limit_reached", status=403)


async def _create(request: web.Request, data: schema.NewConnection) -> dict[str, object]:
    state = api(request)
    settings = state.settings
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
    return view


async def me(request: web.Request) -> web.Response:
    """Who the token is: its kind, its account, and what it may still create (``Me``)."""
    principal = require(request)
    grant = principal.create
    create = None
    if grant is not None and principal.token_id is not None:
        used = await api(request).store.token_creates(principal.token_id)
        create = {"providers": sorted(grant.providers) if grant.providers is not None else None,
                  "limit": grant.limit, "remaining": max(grant.limit - used, 0)}
    return json_response({"kind": principal.kind, "account_id": principal.account_id, "create": create})


async def get_connection(request: web.Request) -> web.Response:
    view, body = shown(await visible(request, opened=False))
    analytics.status_shown(api(request).analytics, request.get(PRINCIPAL), [view], via="api")
    return json_body_response(body)


async def list_connections(request: web.Request) -> web.Response:
    principal = require(request)
    account = v.account_id(request.query.get("account_id") or principal.account_id)
    if not principal.can_see(account):
        return json_response({"connections": []})
    records = await api(request).reads.list_for_account(account, opened=False)
    return json_response({"connections": [connection_view(r) for r in records]})


async def reconnect(request: web.Request) -> web.Response:
    record = await visible(request)
    state = api(request)
    limits = {"timeout_s": state.settings.max_timeout_s}
    data = await v.body(request, schema.Reconnect, optional=True, limits=limits)
    if {"secret", "settings"} & data.model_fields_set and not await _setting_up(request, record):
        require_service_for(request, "changing a secret or settings")
    view = await state.connections.reconnect(record, data.secret, data.settings, data.timeout_s)
    if {"secret", "settings"} & data.model_fields_set:
        await held.after_fix(state, record.id, require(request))
    analytics.reconnect_requested(state.analytics, state.store, record, data.secret is not None)
    return json_response(view)


async def _setting_up(request: web.Request, record: ConnectionRecord) -> bool:
    """A browser token that created this connection may still give it the provider's secret (or settings):
    while it has never verified anything (pending or failed, no event received): its setup is under way.
    No other browser token may, and a connection that ever worked keeps its secret."""
    principal = require(request)
    return (principal.kind == "browser" and principal.create is not None and principal.token_id is not None
            and record.events_received == 0 and record.state in ("pending", "failed")
            and await api(request).store.token_created(principal.token_id, record.id))


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
    r.add_get("/v1/me", me)
