"""The status API's state: one typed object under one ``web.AppKey``.

Built once at start-up (``app.py``) and read by handlers as ``request.app[API]``. This module imports
none of the modules that use it (only their types, for the checker), so any of them can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection

    from services.status_api.analytics import Analytics
    from services.status_api.config import Settings
    from services.status_api.connections import Connections
    from services.status_api.hub import ChangeHub
    from services.status_api.limits import StreamQuota
    from shared.broker import ConfirmedPublisher
    from shared.held import HeldStore
    from shared.notify_store import NotifyStore
    from shared.store import Store


@dataclass(frozen=True, slots=True)
class ApiState:
    settings: Settings
    store: Store
    reads: Store  # the same data, for what only shows a status (``opened=False``): a faster pool
    connections: Connections  # the rules of creating, reconnecting and disconnecting
    hub: ChangeHub  # the live changes, fanned out to streams
    analytics: Analytics
    amqp: AbstractRobustConnection
    notify: NotifyStore  # the notification endpoints
    stream_quota: StreamQuota  # open streams per browser token and account, in this process
    held: HeldStore  # rejected requests held to verify again after a fix (shared/held.py)
    deliveries: ConfirmedPublisher  # where re-verified held requests go, as verified delivery messages


API = web.AppKey("api", ApiState)


def api(request: web.Request) -> ApiState:
    return request.app[API]
