"""Shared steps of the per-provider tests: a connection per case, so that
every rejection is checked on a connection that saw nothing else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tests.providers.flow import connection, deliver, rejected
from tests.system import System

Signer = Callable[[dict[str, Any]], tuple[bytes, dict[str, str]]]


async def expect_rejections(
    system: System, provider: str, cases: list[tuple[Signer, str]], **fields: Any
) -> None:
    """Each case on a fresh connection: the request ``sign(conn)`` builds is a 401 with the code."""
    for sign, code in cases:
        conn = await connection(system, provider, **fields)
        body, headers = sign(conn)
        await rejected(system, conn, body, headers, code)


async def delivery_list(system: System, cid: str) -> list[dict[str, Any]]:
    status, data = await system.api("GET", f"/v1/connections/{cid}/deliveries")
    assert status == 200, data
    return data["deliveries"]  # type: ignore[no-any-return]


async def handshake(
    system: System, conn: dict[str, Any], body: bytes, headers: dict[str, str], **kw: Any
) -> tuple[int, Any]:
    """Send a handshake; it is answered at once, then the connection turns connected through the
    normal path (published, consumed, stored) with a delivery marked as handshake and test."""
    status, reply = await deliver(system, conn, body, headers, **kw)
    view = await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
    assert view["reason"] == "handshake_completed"
    [entry] = await delivery_list(system, conn["id"])
    assert entry["outcome"] == "verified" and entry["handshake"] is True and entry["is_test"] is True
    return status, reply


Waiter = Callable[[], Awaitable[None]]
