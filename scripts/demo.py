"""`make demo`: with the system running (`make run`), walk one connection from setup to connected,
and another to failed, printing what a product would show at each step."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import UTC, datetime
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from standardwebhooks import Webhook

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from shared.config import DEV_SERVICE_TOKEN  # noqa: E402

API = os.environ.get("STATUS_API_URL", f"http://127.0.0.1:{os.environ.get('STATUS_API_PORT', '8081')}")
TOKEN = (os.environ.get("STATUS_API_TOKEN") or DEV_SERVICE_TOKEN).split(",")[0]


def show(view: dict[str, Any]) -> None:
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


async def wait_until(
    session: aiohttp.ClientSession, cid: str, ok: Callable[[dict[str, Any]], bool], timeout_s: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        async with session.get(f"{API}/v1/connections/{cid}") as resp:
            view: dict[str, Any] = await resp.json()
        if ok(view) or time.monotonic() > deadline:
            return view
        await asyncio.sleep(0.005)


async def main() -> int:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        try:
            async with session.get(f"{API}/readyz") as resp:
                if resp.status != 200:
                    raise aiohttp.ClientError(await resp.text())
        except aiohttp.ClientError as exc:
            print(f"The status API at {API} is not ready ({exc}). Start the system first: make run")
            return 1

        print("1. The product creates a Standard Webhooks connection for account 'demo':")
        async with session.post(f"{API}/v1/connections",
                                json={"account_id": "demo", "provider": "standard-webhooks"}) as resp:
            conn = await resp.json()
        print(f"    webhook_url={conn['webhook_url']}")
        show(conn)

        print("2. The provider sends a signed test event:")
        body = orjson.dumps({"type": "test.ping", "data": {"hello": "world"}})
        started = time.perf_counter()
        async with session.post(conn["webhook_url"], data=body,
                                headers=signed(conn["secret"], body, f"msg_demo_{conn['id'][:8]}")) as resp:
            print(f"    receiver answered {resp.status}")
        view = await wait_until(session, conn["id"], lambda v: v["state"] == "connected", 10)
        elapsed_ms = (time.perf_counter() - started) * 1000
        show(view)
        print(f"    webhook -> connected in {elapsed_ms:.1f} ms")

        print("3. Another connection, set up with the wrong secret pasted at the provider (deadline 3 s):")
        async with session.post(f"{API}/v1/connections",
                                json={"account_id": "demo", "provider": "standard-webhooks",
                                      "timeout_s": 3}) as resp:
            bad = await resp.json()
        wrong = "whsec_" + "QmFkU2VjcmV0QmFkU2VjcmV0QmFkU2VjcmV0IQ=="
        async with session.post(bad["webhook_url"], data=body,
                                headers=signed(wrong, body, f"msg_demo_{bad['id'][:8]}")) as resp:
            reply = await resp.json()
            print(f"    receiver answered {resp.status} {reply['error']['code']}")
        show(await wait_until(session, bad["id"], lambda v: v["last_error"] is not None, 5))
        print("    ... waiting for the deadline ...")
        show(await wait_until(session, bad["id"], lambda v: v["state"] == "failed", 10))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
