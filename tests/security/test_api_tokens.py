"""Tokens, as someone holding a leaked one sees them.

A token in a URL is written to browser history and to proxy and access logs, so only a browser token
on a stream route may travel there; the service token never does. Browser tokens are standard JWTs
(HS256) that a product backend may mint itself, decoded strictly: one spelling per token, one
algorithm, every claim required, a bounded lifetime, keys chosen by ``kid``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import orjson
import pytest
import redis.asyncio as aioredis

from tests.system import TOKEN, System, start_system

KEY_NEW = "k2026:" + "new-signing-secret-0123456789abcdef" * 2
KEY_OLD = "k2025:" + "old-signing-secret-0123456789abcdef" * 2
AUDIENCE = "hookstatus-page"


@pytest.fixture
async def keyed(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None
) -> AsyncIterator[System]:
    """The system with two signing keys named by kid (the newer signs, both verify)."""
    async with start_system(amqp_url, redis_url, prefix,
                            status_api={"token_signing_key": (KEY_NEW, KEY_OLD)}) as running:
        yield running


async def call(system: System, method: str, path: str, *, token: str | None = None,
               query: dict[str, str] | None = None, **kw: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with system.session.request(method, system.api_url + path, headers=headers, params=query,
                                      **kw) as resp:
        return resp.status, await resp.json(content_type=None)


async def open_stream(system: System, path: str, query: dict[str, str]) -> tuple[int, str]:
    """The status and the first line of a stream (or of the error) opened with ``query``."""
    async with system.session.get(system.api_url + path, params=query) as resp:
        first = await resp.content.readline()
        return resp.status, first.decode()


def mint(key: str, claims: dict[str, Any], *, kid: str | None = "k2026", alg: str = "HS256") -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims, key.split(":", 1)[1], algorithm=alg, headers=headers)


def claims_for(account: str, ttl_s: int = 300, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"aud": AUDIENCE, "sub": account, "iat": now, "exp": now + ttl_s, **extra}


# --- tokens in URLs ------------------------------------------------------------------------------


async def test_the_service_token_in_a_url_is_refused_everywhere(system: System) -> None:
    conn = await system.create(account_id="acct-a")
    for path in ("/v1/connections", f"/v1/connections/{conn['id']}", "/v1/providers", "/v1/me"):
        status, data = await call(system, "GET", path, query={"token": TOKEN})
        assert status == 401, (path, data)
        assert data["error"]["code"] == "service_token_in_url"
        assert TOKEN not in orjson.dumps(data).decode()
    for path in (f"/v1/connections/{conn['id']}/stream", "/v1/accounts/acct-a/stream"):
        status, first = await open_stream(system, path, {"token": TOKEN})
        assert status == 401, (path, first)
        assert orjson.loads(first)["error"]["code"] == "service_token_in_url"
    # The same token in the header works, on the same routes.
    status, _ = await call(system, "GET", f"/v1/connections/{conn['id']}", token=TOKEN)
    assert status == 200


async def test_a_browser_token_in_a_url_only_opens_streams(system: System) -> None:
    conn = await system.create(account_id="acct-a")
    token = await system.browser_token("acct-a")
    for method, path in (("GET", f"/v1/connections/{conn['id']}"), ("GET", "/v1/connections"),
                         ("GET", f"/v1/connections/{conn['id']}/deliveries"),
                         ("POST", f"/v1/connections/{conn['id']}/tests"),
                         ("POST", f"/v1/connections/{conn['id']}/reconnect"), ("GET", "/v1/me")):
        status, data = await call(system, method, path, query={"token": token})
        assert status == 401, (method, path, data)
        assert data["error"]["code"] == "token_in_url"
    assert (await system.get(conn["id"]))["last_test"] is None  # nothing was done
    for path in (f"/v1/connections/{conn['id']}/stream", "/v1/accounts/acct-a/stream"):
        status, first = await open_stream(system, path, {"token": token})
        assert status == 200, (path, first)
        assert first.startswith("retry:")


# --- one spelling per token ----------------------------------------------------------------------


def _respell(token: str) -> list[str]:
    """The same token spelt otherwise: each decodes to the same bytes with a lenient decoder."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    head, payload, signature = token.split(".")
    spare_bits = alphabet[alphabet.index(signature[-1]) ^ 1]  # 32 bytes leave 2 bits unused
    return [
        f"{head}.{payload}.{signature[:10]}!{signature[10:]}",  # junk inside the signature
        f"{head}.{payload}.{signature[:10]}\u00e9{signature[10:]}",
        f"{head}.{payload}.{signature}=",  # padding
        f"{head}.{payload}=.{signature}",
        f"{head}.{payload}.{signature[:-1]}{spare_bits}",  # spare bits set
        f"{head}.{payload[:5]}*{payload[5:]}.{signature}",  # junk inside the claims
    ]


async def test_a_token_respelt_with_junk_or_spare_bits_is_invalid(system: System) -> None:
    conn = await system.create(account_id="acct-a")
    token = await system.browser_token("acct-a")
    assert (await call(system, "GET", f"/v1/connections/{conn['id']}", token=token))[0] == 200
    for variant in _respell(token):
        status, data = await call(system, "GET", f"/v1/connections/{conn['id']}", token=variant)
        assert status == 401, variant
        assert data["error"]["code"] == "invalid_token", variant


# --- a standard format: JWT, HS256, kid ----------------------------------------------------------


async def test_minted_tokens_are_standard_jwts(keyed: System) -> None:
    status, data = await call(keyed, "POST", "/v1/accounts/acct-a/tokens", token=TOKEN, json={"ttl_s": 120})
    assert status == 201
    token = data["token"]
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT", "kid": "k2026"}
    claims = jwt.decode(token, KEY_NEW.split(":", 1)[1], algorithms=["HS256"], audience=AUDIENCE)
    assert set(claims) == {"aud", "sub", "iat", "exp", "jti"}
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16  # random: tokens minted alike differ
    assert claims["sub"] == "acct-a" and claims["exp"] - claims["iat"] == 120
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, KEY_OLD.split(":", 1)[1], algorithms=["HS256"], audience=AUDIENCE)


async def test_the_product_backend_may_mint_tokens_with_a_jwt_library(keyed: System) -> None:
    mine = await keyed.create(account_id="acct-a")
    theirs = await keyed.create(account_id="acct-b")
    for token in (
        mint(KEY_NEW, claims_for("acct-a")),
        mint(KEY_OLD, claims_for("acct-a"), kid="k2025"),  # the older key, during a rotation
        mint(KEY_NEW, claims_for("acct-a"), kid=None),  # no kid: every key is tried
    ):
        status, view = await call(keyed, "GET", f"/v1/connections/{mine['id']}", token=token)
        assert status == 200, view
        status, _ = await call(keyed, "GET", f"/v1/connections/{theirs['id']}", token=token)
        assert status == 404  # its own account only


async def test_tokens_outside_the_rules_are_invalid(keyed: System) -> None:
    conn = await keyed.create(account_id="acct-a")
    now = int(time.time())
    unsigned = (base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode() + "."
                + base64.urlsafe_b64encode(orjson.dumps(claims_for("acct-a"))).rstrip(b"=").decode() + ".")
    refused = {
        "another audience": mint(KEY_NEW, claims_for("acct-a", aud="someone-else")),
        "no audience": mint(KEY_NEW, {k: v for k, v in claims_for("acct-a").items() if k != "aud"}),
        "no expiry": mint(KEY_NEW, {k: v for k, v in claims_for("acct-a").items() if k != "exp"}),
        "no issue time": mint(KEY_NEW, {k: v for k, v in claims_for("acct-a").items() if k != "iat"}),
        "no account": mint(KEY_NEW, {k: v for k, v in claims_for("acct-a").items() if k != "sub"}),
        "an empty account": mint(KEY_NEW, claims_for("")),
        "a lifetime over the maximum": mint(KEY_NEW, claims_for("acct-a", ttl_s=3601)),
        "issued in the future": mint(KEY_NEW, claims_for("acct-a", iat=now + 600, exp=now + 900)),
        "a float expiry": mint(KEY_NEW, claims_for("acct-a", exp=now + 60.5)),
        "HS512": mint(KEY_NEW, claims_for("acct-a"), alg="HS512"),
        "an unknown kid": mint(KEY_NEW, claims_for("acct-a"), kid="k1999"),
        "the wrong key for its kid": mint(KEY_OLD, claims_for("acct-a"), kid="k2026"),
        "another key": jwt.encode(claims_for("acct-a"), "not-our-key-0123456789abcdef0123456789", algorithm="HS256"),
        "alg none": unsigned,
        "two parts": mint(KEY_NEW, claims_for("acct-a")).rsplit(".", 1)[0],
    }
    for what, token in refused.items():
        status, data = await call(keyed, "GET", f"/v1/connections/{conn['id']}", token=token)
        assert status == 401, what
        assert data["error"]["code"] == "invalid_token", what
    expired = mint(KEY_NEW, claims_for("acct-a", iat=now - 120, exp=now - 60))
    status, data = await call(keyed, "GET", f"/v1/connections/{conn['id']}", token=expired)
    assert (status, data["error"]["code"]) == (401, "token_expired")


# --- what a browser token may change -------------------------------------------------------------


async def test_a_browser_token_may_not_change_a_secret_or_settings(system: System) -> None:
    conn = await system.create("meta", account_id="acct-a", settings={"verify_token": "first-verify-token"})
    token = await system.browser_token("acct-a")
    for body in ({"secret": "a-secret-the-attacker-chose-0123"}, {"settings": {"verify_token": "mine-now"}},
                 {"secret": "a-secret-the-attacker-chose-0123", "timeout_s": 60}):
        status, data = await call(system, "POST", f"/v1/connections/{conn['id']}/reconnect", token=token,
                                  json=body)
        assert status == 403, (body, data)
        assert data["error"]["code"] == "service_token_required"
    unchanged = await system.get(conn["id"])
    assert unchanged["version"] == conn["version"]  # nothing was stored

    # A plain reconnect is still the browser's to make, and the service token may change both.
    status, view = await call(system, "POST", f"/v1/connections/{conn['id']}/reconnect", token=token, json={})
    assert status == 200 and view["state"] == "pending"
    status, view = await call(system, "POST", f"/v1/connections/{conn['id']}/reconnect", token=TOKEN,
                              json={"secret": "a-new-secret-from-the-backend-01",
                                    "settings": {"verify_token": "second-verify-token"}})
    assert status == 200 and view["state"] == "pending", view
