"""Dropbox through the running receiver: the GET ``challenge`` echo, then POSTs signed as Dropbox's
webhook docs specify (``X-Dropbox-Signature`` = hex HMAC-SHA256(app secret, body))."""

from __future__ import annotations

import orjson

from tests.providers.flow import accepted, connection, hmac_sha, rejected
from tests.system import System

APP_SECRET = "k3xq9v2m7p4w1zt"  # Dropbox app secrets are 15 characters
NOTIFICATION = orjson.dumps(
    {"list_folder": {"accounts": ["dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc"]},
     "delta": {"users": [12345678]}}
)


def signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    return {"X-Dropbox-Signature": hmac_sha(secret, body).hex(), "content-type": "application/json"}


async def challenge(system: System, conn: dict[str, object], query: str) -> tuple[int, bytes, dict[str, str]]:
    async with system.session.get(f"{conn['webhook_url']}?{query}") as resp:
        return resp.status, await resp.read(), dict(resp.headers)


async def test_challenge_is_echoed_and_recorded_as_reachable(system: System) -> None:
    conn = await connection(system, "dropbox", secret=APP_SECRET)
    status, body, headers = await challenge(system, conn, "challenge=KCVkmwbMo9ysnt4DVvTOGtZPD6vYYw")
    assert status == 200
    assert body == b"KCVkmwbMo9ysnt4DVvTOGtZPD6vYYw"
    assert headers["Content-Type"].startswith("text/plain")
    assert headers["X-Content-Type-Options"] == "nosniff"
    # Anyone can send a challenge: it proves the URL is reachable, not the app secret.
    view = await system.wait_for(conn["id"], lambda v: v["reachable_at"] is not None)
    assert view["state"] == "pending"
    _, data = await system.api("GET", f"/v1/connections/{conn['id']}/deliveries")
    [delivery] = data["deliveries"]
    assert (delivery["outcome"], delivery["handshake"], delivery["is_test"]) == ("reachable", True, True)
    await accepted(system, conn, NOTIFICATION, signed(NOTIFICATION))


async def test_challenge_is_answered_before_the_app_secret_is_pasted(system: System) -> None:
    # The URL is added in the App Console before the app secret is copied here.
    conn = await connection(system, "dropbox")
    status, body, _ = await challenge(system, conn, "challenge=abc-123_x")
    assert (status, body) == (200, b"abc-123_x")
    view = await system.wait_for(conn["id"], lambda v: v["reachable_at"] is not None)
    assert view["state"] == "pending"


async def test_get_without_challenge_is_400(system: System) -> None:
    conn = await connection(system, "dropbox", secret=APP_SECRET)
    status, body, _ = await challenge(system, conn, "other=1")
    assert status == 400
    assert orjson.loads(body)["error"]["code"] == "malformed_handshake"


async def test_signed_notification_connects(system: System) -> None:
    conn = await connection(system, "dropbox", secret=APP_SECRET)
    delivery = await accepted(system, conn, NOTIFICATION, signed(NOTIFICATION))
    assert delivery["event_type"] == "list_folder"


async def test_tampered_body_is_refused(system: System) -> None:
    conn = await connection(system, "dropbox", secret=APP_SECRET)
    await rejected(system, conn, NOTIFICATION.replace(b"12345678", b"87654321"), signed(NOTIFICATION),
                   "signature_mismatch")


async def test_wrong_secret_is_refused(system: System) -> None:
    conn = await connection(system, "dropbox", secret=APP_SECRET)
    await rejected(system, conn, NOTIFICATION, signed(NOTIFICATION, "the-app-key-xyz"), "signature_mismatch")


async def test_repeated_identical_notifications_all_count(system: System) -> None:
    # Dropbox sends the same body for every change in an account: none of them is a duplicate.
    conn = await connection(system, "dropbox", secret=APP_SECRET)
    for _ in range(3):
        status, reply = await system.post_hook(conn["webhook_url"], NOTIFICATION, signed(NOTIFICATION))
        assert status == 202, reply
    view = await system.wait_for(conn["id"], lambda v: v["events_received"] == 3)
    assert view["state"] == "connected"
