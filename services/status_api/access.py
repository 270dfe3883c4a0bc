"""Which connection a request names, if its caller may see it."""

from __future__ import annotations

from aiohttp import web

from services.status_api.auth import require
from services.status_api.connections import not_found
from services.status_api.state import api
from shared.records import ConnectionRecord


async def visible(request: web.Request) -> ConnectionRecord:
    """The connection named in the path, if the caller may see it; else 404 (never 403)."""
    record = await api(request).connections.get(request.match_info["connection_id"])
    if not require(request).can_see(record.account_id):
        raise not_found()
    return record
