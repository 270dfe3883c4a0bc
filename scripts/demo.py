"""`make demo`: with the system running (`make run`), walk one connection from setup to connected,
and another to failed, printing what a product would show at each step. It uses the typed client
(`hookstatus_client`) and the live status stream, as a product backend would."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from standardwebhooks import Webhook

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from hookstatus_client import HookStatusClient, HookStatusError  # noqa: E402
from shared.config import DEV_SERVICE_TOKEN  # noqa: E402

API = os.environ.get("STATUS_API_URL", f"http://127.0.0.1:{os.environ.get('STATUS_API_PORT', '8081')}")
TOKEN = (os.environ.get("STATUS_API_TOKEN") or DEV_SERVICE_TOKEN).split(",")[0]
WRONG_SECRET = "whsec_" + "QmFkU2VjcmV0QmFkU2VjcmV0QmFkU2VjcmV0IQ=="


def show(view: Any) -> None:
    err = view.get("last_error") or {}
    print(f"    state={view['state']:<10} button={view['cta']['label']!r:<28} reason={view['reason']}")
    if view.get("reason_message"):
        print(f"    says: {view['reason_message']}")
    if err:
        print(f"    last error: {err['code']}: {err['message']}")


def signed(secret: str, body: bytes, msg_id: str) -> dict[str, str]:
    """Sign as a Standard Webhooks provider would, with the spec's own library."""
    now = datetime.now(tz=UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body.decode()),
        "content-type": "application/json",
    }


async def send(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> str:
    async with session.post(url, data=body, headers=headers) as resp:
        reply = await resp.json(content_type=None)
        code = reply.get("error", {}).get("code", "") if isinstance(reply, dict) else ""
        return f"{resp.status} {code}".strip()


async def until(client: HookStatusClient, cid: str, ok: Callable[[Any], bool], timeout_s: float) -> Any:
    """Follow the connection's live stream until ``ok(status)``; no polling."""
    async with asyncio.timeout(timeout_s):
        async for event in client.stream(connection_id=cid):
            if event.event == "connection" and ok(event.connection):
                return event.connection
    raise TimeoutError


async def main() -> int:
    async with HookStatusClient(API, TOKEN) as client, aiohttp.ClientSession() as hooks:
        try:
            await client.providers()
        except HookStatusError as exc:
            print(f"The status API at {API} is not answering ({exc}). Start the system first: make run")
            return 1

        print("1. The product creates a Standard Webhooks connection for account 'demo':")
        conn = await client.create_connection("demo", "standard-webhooks")
        print(f"    webhook_url={conn['webhook_url']}")
        show(conn)

        print("2. The provider sends a signed test event; the status stream reports the change:")
        body = orjson.dumps({"type": "test.ping", "data": {"hello": "world"}})
        waiter = asyncio.create_task(until(client, conn["id"], lambda v: v["state"] == "connected", 10))
        await asyncio.sleep(0.2)  # let the stream open before the event is sent
        started = time.perf_counter()
        answer = await send(hooks, conn["webhook_url"], body, signed(conn["secret"], body, f"msg_{conn['id']}"))
        print(f"    receiver answered {answer}")
        view = await waiter
        elapsed_ms = (time.perf_counter() - started) * 1000
        show(view)
        print(f"    webhook -> connected (seen on the live stream) in {elapsed_ms:.1f} ms")

        print("3. Another connection, with the wrong secret pasted at the provider (deadline 3 s):")
        bad = await client.create_connection("demo", "standard-webhooks", timeout_s=3)
        answer = await send(hooks, bad["webhook_url"], body, signed(WRONG_SECRET, body, f"msg_{bad['id']}"))
        print(f"    receiver answered {answer}")
        show(await until(client, bad["id"], lambda v: v["last_error"] is not None, 5))
        print("    ... waiting for the deadline ...")
        show(await until(client, bad["id"], lambda v: v["state"] == "failed", 10))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
