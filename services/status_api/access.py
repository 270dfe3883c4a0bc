"""Which connection a request names, if its caller may see it."""

from __future__ import annotations

from aiohttp import web

from services.status_api.auth import require
from services.status_api.connections import not_found
from services.status_api.state import api
from shared.records import ConnectionRecord


async def visible(request: web.Request, *, opened: bool = True) -> ConnectionRecord:
    """The connection named in the path, if the caller may see it; else 404 (never 403). ``opened``
    False: only to be shown, its secret and settings not decrypted (``Store.get``)."""
    record = await api(request).connections.get(request.match_info["connection_id"], opened=opened)
    if not require(request).can_see(record.account_id):
        raise not_found()
    return record
