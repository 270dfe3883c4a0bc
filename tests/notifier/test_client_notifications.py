"""Notification endpoints through the typed client, against the running system and a real receiver."""

from __future__ import annotations

from standardwebhooks import Webhook

from hookstatus_client import HookStatusClient, HookStatusError
from tests.notifier.conftest import ProductReceiver
from tests.notifier.test_notifications import send_verified, wait_attempts
from tests.system import TOKEN, System


async def test_register_receive_read_the_log_and_delete(notified: System, product: ProductReceiver) -> None:
    async with HookStatusClient(notified.api_url, TOKEN) as client:
        endpoint = await client.create_notification_endpoint(product.url("c"), events=["connection.connected"])
        assert endpoint["secret"].startswith("whsec_") and endpoint["events"] == ["connection.connected"]
        assert [e["id"] for e in await client.list_notification_endpoints()] == [endpoint["id"]]
        assert "secret" not in await client.get_notification_endpoint(endpoint["id"])

        conn = await notified.create()
        await send_verified(notified, conn)
        received = await product.wait_event("c", "connection.connected", conn["id"])
        assert Webhook(endpoint["secret"]).verify(received.body, received.headers)["data"]["id"] == conn["id"]
        await wait_attempts(notified, endpoint["id"], 1)
        [attempt] = await client.notification_attempts(endpoint["id"])
        assert (attempt["outcome"], attempt["status"], attempt["attempt"]) == ("delivered", 200, 1)
        assert attempt["event_id"] == received.headers["webhook-id"]
        enabled = await client.enable_notification_endpoint(endpoint["id"])  # enabled already: still so
        assert (enabled["id"], enabled["status"], enabled["failed_events"]) == (endpoint["id"], "enabled", 0)

        await client.delete_notification_endpoint(endpoint["id"])
        try:
            await client.get_notification_endpoint(endpoint["id"])
        except HookStatusError as exc:
            assert (exc.status, exc.code) == (404, "endpoint_not_found")
        else:
            raise AssertionError("a deleted endpoint is still served")
