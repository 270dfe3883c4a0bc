"""Asana through the running receiver: the ``X-Hook-Secret`` handshake (the secret arrives in it and is
stored; the handshake itself proves nothing, so it is only ``reachable``), then events signed with it as
Asana's webhook docs specify (``X-Hook-Signature`` = hex HMAC-SHA256(X-Hook-Secret, body))."""

from __future__ import annotations

from typing import Any

import orjson

from tests.providers.flow import connected, connection, deliver, hmac_sha, rejected
from tests.system import System

HOOK_SECRET = "4f1b7c2a9d3e8f605b1c2d3e4f5a6b7c"
EVENTS = orjson.dumps(
    {"events": [{"action": "changed", "user": {"gid": "1234", "resource_type": "user"},
                 "resource": {"gid": "5678", "resource_type": "task"}, "created_at": "2026-11-27T16:00:00Z"}]}
)


def signed(body: bytes, secret: str = HOOK_SECRET) -> dict[str, str]:
    return {"X-Hook-Signature": hmac_sha(secret, body).hex(), "content-type": "application/json"}


async def handshake(system: System, conn: dict[str, Any], secret: str) -> tuple[int, Any, str | None]:
    async with system.session.post(conn["webhook_url"], data=b"", headers={"X-Hook-Secret": secret}) as resp:
        return resp.status, await resp.read(), resp.headers.get("X-Hook-Secret")


async def handshaken(system: System) -> dict[str, Any]:
    conn = await connection(system, "asana")
    status, _, echoed = await handshake(system, conn, HOOK_SECRET)
    assert (status, echoed) == (200, HOOK_SECRET)
    await system.wait_for(conn["id"], lambda v: v["reachable_at"] is not None)
    return conn


async def test_handshake_is_echoed_and_teaches_the_secret(system: System) -> None:
    conn = await connection(system, "asana")
    assert conn["secret"].startswith("asana-pending:")  # no secret exists before the handshake
    status, _, echoed = await handshake(system, conn, HOOK_SECRET)
    assert status == 200
    assert echoed == HOOK_SECRET
    view = await system.wait_for(conn["id"], lambda v: v["reachable_at"] is not None)
    assert view["state"] == "pending"  # the handshake proves nothing: a signed event connects
    assert view["secret_learnt_at"] is not None
    [delivery] = (await system.api("GET", f"/v1/connections/{conn['id']}/deliveries"))[1]["deliveries"]
    assert (delivery["outcome"], delivery["handshake"], delivery["is_test"]) == ("reachable", True, True)
    assert HOOK_SECRET not in orjson.dumps(view).decode()
    assert (await deliver(system, conn, EVENTS, signed(EVENTS)))[0] == 202
    await connected(system, conn)


async def test_events_verify_with_the_learnt_secret(system: System) -> None:
    conn = await handshaken(system)
    status, reply = await deliver(system, conn, EVENTS, signed(EVENTS))
    assert status == 202, reply
    view = await system.wait_for(conn["id"], lambda v: v["events_received"] >= 1)
    assert view["state"] == "connected"
    _, data = await system.api("GET", f"/v1/connections/{conn['id']}/deliveries")
    assert data["deliveries"][0]["event_type"] == "task.changed"


async def test_every_heartbeat_is_an_event(system: System) -> None:
    conn = await handshaken(system)
    heartbeat = b'{"events":[]}'  # the same bytes every time: each one still counts
    for _ in range(2):
        assert (await deliver(system, conn, heartbeat, signed(heartbeat)))[0] == 202
    await system.wait_for(conn["id"], lambda v: v["events_received"] == 2)


async def test_tampered_body_is_refused(system: System) -> None:
    conn = await handshaken(system)
    status, reply = await deliver(system, conn, EVENTS.replace(b"changed", b"deleted"), signed(EVENTS))
    assert status == 401
    assert reply["error"]["code"] == "signature_mismatch"


async def test_wrong_secret_is_refused(system: System) -> None:
    conn = await handshaken(system)
    status, reply = await deliver(system, conn, EVENTS, signed(EVENTS, "0" * 32))
    assert status == 401
    assert reply["error"]["code"] == "signature_mismatch"


async def test_event_before_any_handshake_is_refused(system: System) -> None:
    conn = await connection(system, "asana")
    reply = await rejected(system, conn, EVENTS, signed(EVENTS), "signature_mismatch")
    assert "handshake" in reply["error"]["message"]


async def test_a_second_handshake_is_refused_until_reconnect(system: System) -> None:
    conn = await handshaken(system)
    status, body, echoed = await handshake(system, conn, "a-hijacker-secret-000000000000")
    assert status == 409
    assert echoed is None
    assert orjson.loads(body)["error"]["code"] == "secret_already_learnt"
    # The owner registers a new Asana webhook: reconnect opens the handshake again.
    status, view = await system.api(
        "POST", f"/v1/connections/{conn['id']}/reconnect", json={"secret": "await-handshake"}
    )
    assert status == 200, view
    new_secret = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
    status, _, echoed = await handshake(system, conn, new_secret)
    assert (status, echoed) == (200, new_secret)
    assert (await deliver(system, conn, EVENTS, signed(EVENTS, new_secret)))[0] == 202
    await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
