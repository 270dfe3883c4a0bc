"""The steps every provider test takes through the running system: create a connection, send a request
the way the provider would, and check what the receiver answered and what the status became."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from tests.system import System


def hmac_sha(key: str | bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    """A plain HMAC, written out as the providers' docs describe it (never our adapters' code)."""
    raw_key = key.encode() if isinstance(key, str) else key
    return hmac.new(raw_key, message, getattr(hashlib, algorithm)).digest()


def now_s(skew_s: float = 0) -> int:
    return int(time.time() + skew_s)


async def connection(system: System, provider: str, **fields: Any) -> dict[str, Any]:
    conn = await system.create(provider, **fields)
    assert conn["state"] == "pending"
    return conn


async def deliver(
    system: System, conn: dict[str, Any], body: bytes, headers: dict[str, str], *, method: str = "POST",
    query: str = "",
) -> tuple[int, Any]:
    url = conn["webhook_url"] + (f"?{query}" if query else "")
    return await system.post_hook(url, body, headers, method=method)


async def accepted(
    system: System, conn: dict[str, Any], body: bytes, headers: dict[str, str], **kw: Any
) -> dict[str, Any]:
    """A request the provider signed: 202, and the connection turns connected. Returns the delivery."""
    status, reply = await deliver(system, conn, body, headers, **kw)
    assert status == 202, reply
    assert reply["status"] == "accepted"
    return await connected(system, conn)


async def connected(system: System, conn: dict[str, Any]) -> dict[str, Any]:
    """Wait for ``connected``; return the newest entry of the deliveries list."""
    view = await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
    assert view["events_received"] >= 1
    status, data = await system.api("GET", f"/v1/connections/{conn['id']}/deliveries")
    assert status == 200
    newest: dict[str, Any] = data["deliveries"][0]
    assert newest["outcome"] == "verified"
    return newest


async def rejected(
    system: System, conn: dict[str, Any], body: bytes, headers: dict[str, str], code: str, **kw: Any
) -> dict[str, Any]:
    """A request that must not verify: 401 with ``code``, and the connection stays unverified."""
    status, reply = await deliver(system, conn, body, headers, **kw)
    assert status == 401, reply
    assert reply["error"]["code"] == code, reply
    view = await system.wait_for(conn["id"], lambda v: v["last_error"] is not None)
    assert view["state"] == "pending"
    assert view["events_received"] == 0
    assert view["last_error"]["code"] == code
    return reply  # type: ignore[no-any-return]
