"""Rotating a Standard Webhooks (or Svix) connection between key types: from a ``whsec_`` secret to the
sender's ``whpk_`` public key, or back. During the rotation window, deliveries still signed with the
previous key verify (with the previous key, and the status says it is in use), whichever kind it is.

HMAC (v1) signatures are made with the ``standardwebhooks`` and ``svix`` packages; ed25519 (v1a) with
``cryptography`` exactly as the spec describes (neither package signs v1a).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from standardwebhooks import Webhook as StandardWebhook
from svix.webhooks import Webhook as SvixWebhook

from tests.providers.test_svix import key_pair, v1a_headers
from tests.system import System

EVENT = orjson.dumps({"type": "invoice.paid", "data": {"id": "in_1"}})
SIGNERS = {"standard-webhooks": StandardWebhook, "svix": SvixWebhook}


def v1_headers(provider: str, secret: str) -> dict[str, str]:
    msg_id, at = f"msg_{uuid.uuid4().hex}", datetime.now(tz=UTC)
    signature = SIGNERS[provider](secret).sign(msg_id, at, EVENT.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": signature,
            "content-type": "application/json"}


async def post(system: System, conn: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
    return await system.post_hook(conn["webhook_url"], EVENT, headers)


async def reconnect(system: System, cid: str, secret: str) -> dict[str, Any]:
    status, view = await system.api("POST", f"/v1/connections/{cid}/reconnect", json={"secret": secret})
    assert status == 200, view
    assert view["previous_secret_active"] is True
    return view  # type: ignore[no-any-return]


@pytest.mark.parametrize("provider", sorted(SIGNERS))
async def test_from_an_hmac_secret_to_a_public_key(system: System, provider: str) -> None:
    old = "whsec_" + "b2xkLXNlY3JldC1iZWZvcmUtdGhlLXJvdGF0aW9uIQ=="
    conn = await system.create(provider, secret=old)
    private, public, _ = key_pair()
    await reconnect(system, conn["id"], public)
    # The sender has not switched yet: its v1 (HMAC) signature with the previous secret verifies.
    status, reply = await post(system, conn, v1_headers(provider, old))
    assert status == 202, reply
    view = await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
    assert view["previous_secret_last_used_at"] is not None
    # Then it switches: v1a with the new key verifies too; a v1 from another secret still does not.
    status, reply = await post(system, conn, v1a_headers(private, EVENT))
    assert status == 202, reply
    stranger = StandardWebhook("whsec_" + "c3RyYW5nZXItc2VjcmV0LWtleS0wMTIzNDU2Nzg5")
    msg_id, at = f"msg_{uuid.uuid4().hex}", datetime.now(tz=UTC)
    forged = {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
              "webhook-signature": stranger.sign(msg_id, at, EVENT.decode())}
    status, reply = await post(system, conn, forged)
    assert status == 401, reply


@pytest.mark.parametrize("provider", sorted(SIGNERS))
async def test_from_a_public_key_to_an_hmac_secret(system: System, provider: str) -> None:
    private, public, _ = key_pair()
    conn = await system.create(provider, secret=public)
    new = "whsec_" + "bmV3LXNlY3JldC1mb3Itcm90YXRpb24tdGVzdHMh"
    await reconnect(system, conn["id"], new)
    status, reply = await post(system, conn, v1a_headers(private, EVENT))  # still the previous key pair
    assert status == 202, reply
    view = await system.wait_for(conn["id"], lambda v: v["state"] == "connected")
    assert view["previous_secret_last_used_at"] is not None
    status, reply = await post(system, conn, v1_headers(provider, new))
    assert status == 202, reply
    # Another key pair's v1a is still refused.
    other, _, _ = key_pair()
    status, reply = await post(system, conn, v1a_headers(other, EVENT))
    assert status == 401, reply
