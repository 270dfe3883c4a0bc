"""A typed async client for the hookstatus status API (for the product backend).

    async with HookStatusClient("http://127.0.0.1:8081", token) as client:
        conn = await client.create_connection("acct_42", "stripe")
        async for event in client.stream(account_id="acct_42"):
            print(event.data["display"])
"""

from hookstatus_client.client import HookStatusClient
from hookstatus_client.errors import HookStatusError
from hookstatus_client.events import StreamEvent
from hookstatus_client.sse import SseEvent, SseParser
from hookstatus_client.types import (
    BrowserToken,
    Connection,
    ConnectionTest,
    CreatedConnection,
    Cta,
    Delivery,
    FailedDetail,
    Hops,
    LastError,
    LastTest,
    Provider,
    Rhythm,
    Silence,
)

__all__ = [
    "BrowserToken",
    "Connection",
    "ConnectionTest",
    "CreatedConnection",
    "Cta",
    "Delivery",
    "FailedDetail",
    "HookStatusClient",
    "HookStatusError",
    "Hops",
    "LastError",
    "LastTest",
    "Provider",
    "Rhythm",
    "Silence",
    "SseEvent",
    "SseParser",
    "StreamEvent",
]
