"""Held deliveries: the rejected requests a connection holds (``shared/held.py``), listed without their
body, and verified again on ``POST /v1/connections/{id}/reverify`` or after a reconnect that changes the
secret or settings.

The status API re-verifies (it is where the fix is made), but it turns nothing green itself: a request
that now verifies is published, confirmed, as a verified delivery message to the deliveries queue, and
the verifier applies it with ``apply_delivery.lua`` like any other (docs/DECISIONS.md).
"""

from __future__ import annotations

import logging

from aiohttp import web

from services.status_api.access import visible
from services.status_api.auth import Principal, require
from services.status_api.limits import too_many_reverifies
from services.status_api.state import ApiState, api
from shared.errors import ApiError, BrokerUnavailable, ServiceUnavailable, StoreUnavailable
from shared.held import ReverifyResult, reverify
from shared.http import json_response
from shared.models import DeliveryMessage, now_ms

log = logging.getLogger(__name__)
RETRY_AFTER_S = 5
REVERIFY_WINDOW_MS = 60_000  # REVERIFIES_PER_MINUTE counts in windows this long


async def reverify_allowed(state: ApiState, cid: str, principal: Principal) -> int | None:
    """Count one re-verification of the connection asked by a browser token; None when allowed, else ms
    until the next one is. The product's service token is trusted and never counted, so a leaked
    browser token that spends the connection's budget cannot hold back the product's fix."""
    if principal.kind == "service":
        return None
    attempts, left_ms = await state.store.count_reverify(cid, REVERIFY_WINDOW_MS)
    return None if attempts <= state.settings.reverifies_per_minute else left_ms


async def verify_held(state: ApiState, cid: str) -> ReverifyResult:
    """Verify the connection's held requests again; those that verify are published (confirmed)."""
    async def publish(msg: DeliveryMessage) -> None:
        await state.deliveries.publish(msg.to_bytes(), message_id=msg.delivery_id)

    return await reverify(state.held, cid, publish, now_ms())


async def after_fix(state: ApiState, cid: str, principal: Principal) -> None:
    """After a reconnect with a new secret or settings. The reconnect stands whatever happens here: held
    requests not verified now stay held for ``POST .../reverify``."""
    try:
        if await reverify_allowed(state, cid, principal) is not None:
            log.warning("held deliveries not verified again after a reconnect: too many re-verifications of "
                        "this connection this minute; they stay held", extra={"connection_id": cid})
            return
        result = await verify_held(state, cid)
    except (BrokerUnavailable, StoreUnavailable):
        log.warning("held deliveries not verified again after a reconnect; they stay held",
                    extra={"connection_id": cid})
        return
    if result.checked:
        log.info("held deliveries verified again", extra={"connection_id": cid, **result.as_dict()})


async def list_held(request: web.Request) -> web.Response:
    record = await visible(request)
    return json_response({"held": await api(request).held.listing(record.id, now_ms())})


async def reverify_connection(request: web.Request) -> web.Response:
    """A service or a browser token: it changes no secret, and only a request the stored secret signed
    can turn the connection green (docs/DECISIONS.md)."""
    record = await visible(request)
    if record.state == "disconnected":
        raise ApiError("the connection is disconnected; reconnect it first", code="connection_disconnected",
                       status=409)
    state = api(request)
    wait_ms = await reverify_allowed(state, record.id, require(request))
    if wait_ms is not None:
        raise too_many_reverifies(state.settings.reverifies_per_minute, wait_ms)
    try:
        result = await verify_held(state, record.id)
    except BrokerUnavailable as exc:
        raise ServiceUnavailable("the verified deliveries could not be queued right now; retry later",
                                 code="broker_unavailable", retry_after_s=RETRY_AFTER_S) from exc
    return json_response(result.as_dict())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/connections/{connection_id}/held", list_held)
    app.router.add_post("/v1/connections/{connection_id}/reverify", reverify_connection)
