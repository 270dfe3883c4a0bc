"""The receiver over real HTTP, fed arbitrary requests (hypothesis): every provider's connection,
arbitrary headers, query strings, bodies, methods and paths, and raw byte-level requests that no
HTTP client would send. Never a 500; every refusal is a 4xx with ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import string
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import SettingsError
from shared.providers import PROVIDERS
from tests.faults.ledger import write_report
from tests.system import System
from tests.test_fuzz_providers import body_strategy, header_value

STATUSES: Counter[int] = Counter()
# Settings that make a connection of each provider that needs some (others need none).
KNOWN_SETTINGS: dict[str, dict[str, Any]] = {
    "meta": {"verify_token": "fuzz-verify-token"},
    "generic-hmac": {"header": "X-Sig"},
    "msgraph": {"client_state": "fuzz-client-state"},
}
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# What an HTTP client will send at all (no control characters); the raw test below sends the rest.
safe_value = header_value.map(lambda v: "".join(c for c in v if c == "\t" or 32 <= ord(c) < 256 and ord(c) != 127))


@pytest.fixture
async def hooks(system: System) -> AsyncIterator[dict[str, str]]:
    """One connection per provider: name -> webhook URL."""
    urls = {}
    for name, provider in sorted(PROVIDERS.items()):
        try:
            provider.validate_settings({})
            extra: dict[str, Any] = {}
        except SettingsError:
            extra = {"settings": KNOWN_SETTINGS[name]} if name in KNOWN_SETTINGS else {}
        status, body = await system.api("POST", "/v1/connections",
                                        json={"account_id": "acct-fuzz", "provider": name, **extra})
        if status == 201:
            urls[name] = body["webhook_url"]
    assert len(urls) >= len(PROVIDERS) - 1, f"could not set up: {sorted(set(PROVIDERS) - set(urls))}"
    yield urls


def check(status: int, body: bytes) -> None:
    STATUSES[status] += 1
    assert status < 500, (status, body[:300])
    if status >= 400:
        error = orjson.loads(body)["error"]
        assert error["code"] and error["message"], body


@FUZZ
@given(data=st.data())
async def test_arbitrary_requests_to_every_provider_get_a_clean_answer(
    system: System, hooks: dict[str, str], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(hooks)), "provider")
    provider = PROVIDERS[name]
    names = list(provider.info.headers) + ["Content-Type", "Content-Encoding", "Transfer-Encoding-X", "X-Event-Id"]
    headers = {}
    for header in data.draw(st.lists(st.sampled_from(names), max_size=6), "header names"):
        headers[header] = data.draw(safe_value, header)
    query = data.draw(st.dictionaries(st.sampled_from(["challenge", "crc_token", "validationToken", "hub.mode",
                                                       "hub.challenge", "hub.verify_token", "x"]),
                                      st.text(string.printable, max_size=30), max_size=3), "query")
    method = data.draw(st.sampled_from(["POST", "POST", "GET", "PUT", "DELETE", "PATCH"]), "method")
    body = data.draw(body_strategy, "body")
    async with system.session.request(method, hooks[name], params=query, data=body, headers=headers) as resp:
        check(resp.status, await resp.read())


@FUZZ
@given(path=st.text(string.printable, max_size=60), method=st.sampled_from(["GET", "POST", "HEAD", "OPTIONS"]))
async def test_arbitrary_paths_are_4xx(system: System, path: str, method: str) -> None:
    url = f"{system.receiver_url}/hooks/{path.lstrip('/')}"
    try:
        async with system.session.request(method, url, data=b"{}") as resp:
            body = await resp.read()
    except (ValueError, aiohttp.InvalidURL):
        return  # the client itself refuses to send it
    if method == "HEAD":
        STATUSES[resp.status] += 1
        assert resp.status < 500
        return
    check(resp.status, body)


@FUZZ
@given(body=st.binary(max_size=2000), tamper=st.sampled_from(["none", "body", "digest", "scheme", "hex"]))
async def test_the_right_answer_for_signed_forged_and_malformed_requests(
    system: System, hooks: dict[str, str], body: bytes, tamper: str
) -> None:
    """generic-hmac-sha256 over arbitrary bytes: signed → 202 (never limited); a changed body or digest →
    401 signature_mismatch; a header not of the form sha256=<hex> → 401 malformed_signature (or 429 once
    the connection's bucket for rejected deliveries is empty)."""
    url = hooks["generic-hmac-sha256"]
    secret = await _secret_of(system, url)
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    sent, header = body, f"sha256={digest}"
    if tamper == "body":
        sent = body + b"!"
    elif tamper == "digest":
        header = f"sha256={digest[:-1]}{'0' if digest[-1] != '0' else '1'}"
    elif tamper == "scheme":
        header = f"sha1={digest}"
    elif tamper == "hex":
        header = f"sha256={digest[:-1]}z"
    async with system.session.post(url, data=sent, headers={"X-Signature-256": header}) as resp:
        answer = await resp.read()
    check(resp.status, answer)
    expected = {"none": 202, "body": 401, "digest": 401, "scheme": 401, "hex": 401}[tamper]
    if expected == 202:
        assert resp.status == 202, answer
        return
    assert resp.status in (expected, 429), answer
    if resp.status == 401:
        code = orjson.loads(answer)["error"]["code"]
        wanted = "signature_mismatch" if tamper in ("body", "digest") else "malformed_signature"
        assert code == wanted, (tamper, answer)


async def _secret_of(system: System, url: str) -> str:
    """The connection's secret, read the way the receiver reads it (the API never shows it again)."""
    import redis.asyncio as aioredis

    from shared.store import Store

    cid = url.rsplit("/", 1)[1]
    client = aioredis.Redis.from_url(system.common["redis_url"], decode_responses=True)
    try:  # stored sealed (shared/crypto.py): opened as the receiver opens it
        credentials = await Store(client, system.common["redis_prefix"]).get_credentials(cid)
        return credentials.secret if credentials else ""
    finally:
        await client.aclose()


raw_byte_headers = st.lists(
    st.tuples(st.binary(min_size=1, max_size=30).filter(lambda b: b":" not in b and b"\r" not in b and b"\n" not in b),
              st.binary(max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b)),
    max_size=6,
)


@FUZZ
@given(headers=raw_byte_headers, body=st.binary(max_size=200), content_length=st.none() | st.integers(-1, 400))
async def test_raw_byte_level_requests_never_break_the_receiver(
    system: System, hooks: dict[str, str], headers: list[tuple[bytes, bytes]], body: bytes,
    content_length: int | None,
) -> None:
    """Header names and values that are not valid text, wrong Content-Length: a 4xx (or a closed
    connection for what is not HTTP at all), never a 500 and never a hang."""
    url = hooks[sorted(hooks)[0]]
    host, port = url.split("/")[2].split(":")
    path = "/" + url.split("/", 3)[3]
    length = len(body) if content_length is None else content_length
    head = [f"POST {path} HTTP/1.1".encode(), f"Host: {host}".encode(), f"Content-Length: {length}".encode(),
            b"Connection: close", *[name + b": " + value for name, value in headers]]
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        await writer.drain()
        if length > len(body):
            writer.write_eof()  # the body promised is never sent in full
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    if not answer:
        STATUSES[0] += 1  # closed without an answer: the server gave up on a request it could not parse
        return
    status = int(answer.split(b" ", 2)[1])
    STATUSES[status] += 1
    assert status < 500, answer[:300]


@pytest.fixture(scope="module", autouse=True)
def _report() -> Any:
    yield
    write_report("fuzz_receiver", {
        "requests": sum(STATUSES.values()), "statuses": {str(k): v for k, v in sorted(STATUSES.items())},
        "server_errors": sum(n for s, n in STATUSES.items() if s >= 500),
        "command": ".venv/bin/python -m pytest tests/test_fuzz_receiver.py -q",
    })
