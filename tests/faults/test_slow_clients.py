"""Slow and oversized clients against the receiver (a real subprocess) and the status API: each is cut
off by a timeout or a limit with a 4xx (or a closed connection), and the service goes on serving."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson

from tests.faults.harness import TOKEN, Services
from tests.faults.ledger import write_report

COMMAND = ".venv/bin/python -m pytest tests/faults/test_slow_clients.py -q"


async def _raw(port: int, data: bytes, *, then: bytes = b"", every_s: float = 0.0,
               timeout_s: float = 15) -> tuple[bytes, float]:
    """Send ``data``, then ``then`` one byte every ``every_s``; return (answer, seconds until the first
    byte of the answer, or until the server closed without one)."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()

        async def trickle() -> None:
            for i in range(len(then)):
                await asyncio.sleep(every_s)
                writer.write(then[i : i + 1])
                await writer.drain()

        dribble = asyncio.create_task(trickle())
        try:
            answer = await asyncio.wait_for(reader.read(1), timeout_s)
            took = time.monotonic() - started
            if answer:  # the rest of the (small) answer; not until EOF: aiohttp lingers on unread bodies
                answer += await asyncio.wait_for(reader.read(65536), timeout_s)
        finally:
            dribble.cancel()
            await asyncio.gather(dribble, return_exceptions=True)
    finally:
        writer.close()
    return answer, took


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer else 0


async def test_slow_and_oversized_clients_are_cut_off(
    services: Services, receiver_port: int, make_targets, session: aiohttp.ClientSession,
) -> None:
    receiver = services.make("receiver", BODY_READ_TIMEOUT_S="1", IDLE_TIMEOUT_S="2")
    receiver.port = receiver_port
    await receiver.start()
    api = await services.start("status_api")
    [target] = await make_targets(1)
    path = "/" + target.url.split("/", 3)[3]
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    figures: dict[str, object] = {}

    # A body trickled one byte every 0.3 s: 408 once the body read timeout (1 s) passes.
    answer, took = await _raw(receiver.port, f"{head}Content-Length: 200\r\n\r\n".encode(), then=b"x" * 200,
                              every_s=0.3, timeout_s=30)
    assert _status(answer) == 408 and b"body_timeout" in answer, answer
    assert took < 10, "a client trickling its body held its request"
    figures["trickled_body"] = {"status": 408, "seconds": round(took, 1)}

    # Headers that never end (slowloris): the connection is closed after the idle timeout (2 s).
    answer, took = await _raw(receiver.port, f"{head}X-A: 1\r\n".encode(), then=b"X-B: 2\r\n" * 100,
                              every_s=0.5)
    assert took < 10, "a client trickling headers held its connection"
    figures["trickled_headers"] = {"status": _status(answer), "seconds": round(took, 1)}

    # Oversized header line, oversized header value, too many headers: 400 before any handler runs.
    for what, extra in {
        "long_header_value": "X-Big: " + "a" * 9000 + "\r\n",
        "long_header_name": "X-" + "b" * 9000 + ": 1\r\n",
        "too_many_headers": "".join(f"X-H{i}: {i}\r\n" for i in range(200)),
    }.items():
        answer, _ = await _raw(receiver.port, f"{head}{extra}Content-Length: 2\r\n\r\n{{}}".encode())
        assert _status(answer) in (400, 431), (what, answer[:200])
        figures[what] = _status(answer)
    long_path = f"POST /hooks/{'c' * 9000} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
    answer, _ = await _raw(receiver.port, long_path)
    assert _status(answer) in (400, 414), answer[:200]
    figures["long_request_line"] = _status(answer)

    # A body over the limit, announced up front: 413 without reading it.
    answer, _ = await _raw(receiver.port, f"{head}Content-Length: {2 * 1024 * 1024}\r\n\r\n".encode() + b"{")
    assert _status(answer) == 413 and b"body_too_large" in answer, answer[:300]
    figures["announced_big_body"] = 413
    # ... and one that is streamed (chunked) past the limit.
    async with session.post(target.url, data=_chunks(2 * 1024 * 1024)) as resp:
        assert resp.status == 413
    figures["chunked_big_body"] = 413

    # The status API: 64 KiB body limit, JSON error.
    big = orjson.dumps({"account_id": "a", "provider": "generic-hmac-sha256", "secret": "s" * 70_000})
    async with session.post(f"{api.url}/v1/connections", data=big,
                            headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "body_too_large"
    figures["status_api_big_body"] = 413

    # After all that, both still serve.
    async with session.get(f"{receiver.url}/healthz") as resp:
        assert resp.status == 200
    async with session.get(f"{api.url}/healthz") as resp:
        assert resp.status == 200
    assert '"unhandled error"' not in receiver.logs(), receiver.logs()[-2000:]
    # Garbage from clients is the clients' error: no ERROR lines an attacker could fill the logs with.
    assert '"level":"error"' not in receiver.logs(), receiver.logs()[-2000:]
    write_report("slow_and_oversized_clients", {**figures, "server_errors": 0, "command": COMMAND})


async def _chunks(total: int):  # type: ignore[no-untyped-def]
    sent = 0
    while sent < total:
        yield b"y" * 65536
        sent += 65536
