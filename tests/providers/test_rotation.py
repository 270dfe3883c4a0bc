"""Secret rotation through the running system: after a reconnect with a new secret, both secrets verify
for the rotation window and the status says when the old one is still in use; afterwards only the new
one verifies, and a delivery signed with the old one says so (``previous_secret``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from standardwebhooks import Webhook

from tests.providers.flow import connection, deliver
from tests.providers.kit import delivery_list
from tests.system import System, start_system

WINDOW_S = 4
EVENT = orjson.dumps({"type": "invoice.paid"})


@pytest.fixture
async def rotating(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[System]:
    """The system with a rotation window of a few seconds (the status API reads ROTATION_WINDOW_S)."""
    monkeypatch.setenv("ROTATION_WINDOW_S", str(WINDOW_S))
    async with start_system(amqp_url, redis_url, prefix) as running:
        yield running


def signed(secret: str) -> dict[str, str]:
    msg_id, at = f"msg_{uuid.uuid4().hex}", datetime.now(tz=UTC)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, at, EVENT.decode())}


async def reconnect(system: System, cid: str, **body: Any) -> dict[str, Any]:
    status, view = await system.api("POST", f"/v1/connections/{cid}/reconnect", json=body)
    assert status == 200, view
    return view  # type: ignore[no-any-return]


async def test_both_secrets_verify_during_the_window_then_only_the_new_one(rotating: System) -> None:
    system = rotating
    conn = await connection(system, "standard-webhooks")
    old = conn["secret"]
    new = "whsec_" + "bmV3LXNlY3JldC1mb3Itcm90YXRpb24tdGVzdHMh"
    view = await reconnect(system, conn["id"], secret=new)
    assert view["state"] == "pending"
    assert view["previous_secret_active"] is True
    assert view["previous_secret_last_used_at"] is None

    # The sender has not switched yet: the old secret still verifies, and the status says it is in use.
    status, reply = await deliver(system, conn, EVENT, signed(old))
    assert status == 202, reply
    view = await system.wait_for(conn["id"], lambda v: v["previous_secret_last_used_at"] is not None)
    assert view["state"] == "connected"
    assert view["previous_secret_active"] is True

    status, reply = await deliver(system, conn, EVENT, signed(new))
    assert status == 202, reply
    await system.wait_for(conn["id"], lambda v: v["events_received"] == 2)

    # After the window: the old secret no longer verifies, and the rejection says why.
    await system.wait_for(conn["id"], lambda v: v["previous_secret_active"] is False, timeout_s=WINDOW_S + 5)
    status, reply = await deliver(system, conn, EVENT, signed(old))
    assert status == 401
    assert reply["error"]["code"] == "previous_secret"
    assert "rotation window has ended" in reply["error"]["message"]
    status, reply = await deliver(system, conn, EVENT, signed(new))
    assert status == 202, reply
    view = await system.wait_for(conn["id"], lambda v: v["events_received"] == 3)
    reasons = [d["reason"] for d in await delivery_list(system, conn["id"])]
    assert "previous_secret" in reasons
    assert old not in orjson.dumps(view).decode() and new not in orjson.dumps(view).decode()


async def test_a_secret_that_matches_nothing_is_still_a_mismatch(rotating: System) -> None:
    system = rotating
    conn = await connection(system, "standard-webhooks")
    await reconnect(system, conn["id"], secret="whsec_" + "c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24tdGVzdA==")
    status, reply = await deliver(system, conn, EVENT, signed("whsec_" + "dGhpcmQtc2VjcmV0LW5vYm9keS1zZXQtdGhpcyE="))
    assert status == 401 and reply["error"]["code"] == "signature_mismatch"
