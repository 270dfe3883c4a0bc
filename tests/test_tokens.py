"""Browser tokens: minted by the product backend, scoped to one account, short-lived, unforgeable."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from hookstatus_client import HookStatusClient, HookStatusError
from services.status_api import app as status_api_app
from services.status_api import tokens
from services.status_api.app import BrowserPrincipals
from services.status_api.config import Settings
from shared.errors import Unauthorized
from tests.system import System


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def _as(system: System, token: str, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with system.session.request(method, system.api_url + path,
                                      headers={"Authorization": f"Bearer {token}"}, **kw) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_minted_token_has_a_short_iso_expiry(system: System) -> None:
    status, data = await system.api("POST", "/v1/accounts/acct-a/tokens")
    assert status == 201
    assert data["token"].startswith("eyJ")  # a JWT: base64url of '{"'; the format is tests/security's
    assert data["account_id"] == "acct-a"
    expires = datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00"))
    assert timedelta(minutes=14) < expires - datetime.now(UTC) <= timedelta(minutes=15)

    status, data = await system.api("POST", "/v1/accounts/acct-a/tokens", json={"ttl_s": 60})
    assert status == 201
    expires = datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00"))
    assert expires - datetime.now(UTC) <= timedelta(seconds=60)


@pytest.mark.parametrize("body", [{"ttl_s": 0}, {"ttl_s": 10**6}, {"ttl_s": "60"}, {"scope": "all"}])
async def test_bad_token_requests_are_400(system: System, body: dict[str, Any]) -> None:
    status, data = await system.api("POST", "/v1/accounts/acct-a/tokens", json=body)
    assert status == 400
    assert data["error"]["code"] in ("invalid_field", "unknown_field")


async def test_a_browser_token_sees_its_own_account_only(system: System) -> None:
    mine = await system.create(account_id="acct-a")
    theirs = await system.create(account_id="acct-b")
    token = await system.browser_token("acct-a")

    status, view = await _as(system, token, "GET", f"/v1/connections/{mine['id']}")
    assert status == 200 and view["id"] == mine["id"]
    assert "secret" not in view
    # EventSource cannot send headers: on the stream routes the token also works as ?token=
    async with system.session.get(f"{system.api_url}/v1/connections/{mine['id']}/stream",
                                  params={"token": token}) as resp:
        assert resp.status == 200

    for method, path in [
        ("GET", f"/v1/connections/{theirs['id']}"),
        ("GET", f"/v1/connections/{theirs['id']}/deliveries"),
        ("GET", f"/v1/connections/{theirs['id']}/stream"),
        ("POST", f"/v1/connections/{theirs['id']}/tests"),
        ("POST", f"/v1/connections/{theirs['id']}/reconnect"),
    ]:
        status, data = await _as(system, token, method, path)
        assert status == 404, (method, path, data)
        assert data["error"]["code"] == "connection_not_found"
    status, data = await _as(system, token, "GET", "/v1/accounts/acct-b/stream")
    assert status == 404

    status, data = await _as(system, token, "GET", "/v1/connections")
    assert [c["id"] for c in data["connections"]] == [mine["id"]]
    status, data = await _as(system, token, "GET", "/v1/connections", params={"account_id": "acct-b"})
    assert data["connections"] == []

    # The other account's connection is untouched by all of the above.
    assert (await system.get(theirs["id"]))["state"] == "pending"
    assert (await system.get(theirs["id"]))["last_test"] is None


async def test_a_browser_token_may_test_and_reconnect_but_not_manage(system: System) -> None:
    mine = await system.create(account_id="acct-a")
    token = await system.browser_token("acct-a")
    async with HookStatusClient(system.api_url, token, session=system.session) as client:
        test = await client.start_test(mine["id"], timeout_s=60)
        assert test["state"] == "waiting"
        assert (await client.reconnect(mine["id"]))["state"] == "pending"
        with pytest.raises(HookStatusError) as refused:  # no create grant in this token
            await client.create_connection("acct-a", "standard-webhooks")
        assert (refused.value.status, refused.value.code) == (403, "create_not_allowed")
        for call in (
            client.disconnect(mine["id"]),
            client.create_browser_token("acct-a"),
        ):
            with pytest.raises(HookStatusError) as err:
                await call
            assert err.value.status == 404
    assert (await system.get(mine["id"]))["state"] == "pending"


async def test_an_expired_token_is_401_token_expired(system: System) -> None:
    conn = await system.create(account_id="acct-a")
    token = await system.browser_token("acct-a", ttl_s=1)
    status, _ = await _as(system, token, "GET", f"/v1/connections/{conn['id']}")
    assert status == 200
    await asyncio.sleep(1.1)
    status, data = await _as(system, token, "GET", f"/v1/connections/{conn['id']}")
    assert status == 401
    assert data["error"]["code"] == "token_expired"


async def test_an_open_stream_ends_with_token_expired(system: System) -> None:
    conn = await system.create(account_id="acct-a")
    token = await system.browser_token("acct-a", ttl_s=1)
    names = []
    async with HookStatusClient(system.api_url, token, session=system.session) as client:
        async with asyncio.timeout(10):
            async for event in client.stream(account_id="acct-a"):
                names.append(event.event)
    assert names == ["connection", "ready", "token_expired"]
    assert conn["id"]


async def test_forged_tokens_are_401_invalid_token(system: System) -> None:
    conn = await system.create(account_id="acct-b")
    token = await system.browser_token("acct-a")
    head, payload, signature = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    other_account = _b64(orjson.dumps({**claims, "sub": "acct-b"}))
    later = _b64(orjson.dumps({**claims, "exp": claims["exp"] + 10**6}))
    keys = tokens.signing_keys(("not-our-key-0123456789abcdef0123456789",))
    far_past = 1_000_000_000
    forged = [
        f"{head}.{other_account}.{signature}",  # someone else's account, old signature
        f"{head}.{later}.{signature}",  # a longer life, old signature
        tokens.mint(keys, "acct-b", int(time.time()), int(time.time()) + 60),  # signed with another key
        tokens.mint(keys, "acct-b", far_past, far_past + 60),  # ...and expired: still invalid, not expired
        f"{head}.{payload}",
        f"{head}.{payload}.not*base64",
        "...",
        "hsb1",
        "some-random-string",
    ]
    for bad in forged:
        status, data = await _as(system, bad, "GET", f"/v1/connections/{conn['id']}")
        assert status == 401, bad
        assert data["error"]["code"] == "invalid_token", bad


def test_token_round_trip_and_key_rotation() -> None:
    new, old = "new:new-key-0123456789abcdef0123456789", "old:old-key-0123456789abcdef0123456789"
    token = tokens.mint(tokens.signing_keys((new, old)), "acct-a", 1_000, 2_000)
    assert tokens.verify(tokens.signing_keys((new,)), token, 1_500_000, 3600).account_id == "acct-a"
    earlier = tokens.mint(tokens.signing_keys((old,)), "acct-a", 1_000, 2_000)
    assert tokens.verify(tokens.signing_keys((new, old)), earlier, 1_500_000, 3600).expires_at_ms == 2_000_000
    with pytest.raises(Exception) as err:
        tokens.verify(tokens.signing_keys((new,)), earlier, 1_500_000, 3600)
    assert getattr(err.value, "code", None) == "invalid_token"
    # A bare key (the earlier format of the setting) still works; its kid is derived from it.
    bare = tokens.signing_keys(("a-bare-signing-key-0123456789abcdef01234",))
    assert tokens.verify(bare, tokens.mint(bare, "acct-a", 1_000, 2_000), 1_500_000, 3600).account_id == "acct-a"


async def test_no_token_is_401(system: System) -> None:
    async with system.session.get(f"{system.api_url}/v1/connections") as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "missing_token"


@pytest.mark.parametrize("overrides", [
    {"token_signing_key": ()}, {"token_signing_key": ("too-short",)},
    {"token_signing_key": ("kid:0123456789abcdef0123456789abcde",)},  # 31 characters
    {"token_signing_key": ("same:0123456789abcdef0123456789abcdef0", "same:0123456789abcdef0123456789abcdef1")},
    {"browser_token_ttl_s": 7200}, {"sse_heartbeat_s": 0}, {"test_default_timeout_s": 0},
])
def test_bad_token_and_stream_settings_refuse_to_start(overrides: dict[str, Any]) -> None:
    from services.status_api.config import Settings
    from shared.errors import ConfigError

    with pytest.raises(ConfigError):
        Settings.from_env(**overrides)


def test_a_verified_browser_token_is_kept_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    """The middleware's principal of a browser token is verified once and used again until the token
    expires (then ``token_expired``, as without the cache); a token that fails is never kept; a clock
    that went back verifies again; at most ``BROWSER_KEPT`` are kept, the oldest dropped."""
    settings = Settings.from_env()
    keys = tokens.signing_keys(settings.token_signing_key)
    token = tokens.mint(keys, "acct-a", 1_000, 2_000)
    kept = BrowserPrincipals(settings)
    first = kept.principal(token, 1_500_000)
    assert first.kind == "browser" and first.account_id == "acct-a" and first.expires_at_ms == 2_000_000
    assert first.token_id == tokens.fingerprint(token)
    assert kept.principal(token, 1_999_999) is first
    with pytest.raises(Unauthorized) as err:
        kept.principal(token, 2_000_000)
    assert err.value.code == "token_expired"
    assert token not in kept.kept

    again = kept.principal(token, 1_500_000)
    assert again == first and kept.principal(token, 1_400_000) is not again  # the clock went back: verified again

    header, payload, signature = token.split(".")
    forged = ".".join([header, _b64(orjson.dumps({**orjson.loads(base64.urlsafe_b64decode(payload + "==")),
                                                   "sub": "acct-b"})), signature])
    with pytest.raises(Unauthorized) as err:
        kept.principal(forged, 1_500_000)
    assert err.value.code == "invalid_token" and forged not in kept.kept

    monkeypatch.setattr(status_api_app, "BROWSER_KEPT", 2)
    others = [tokens.mint(keys, f"acct-{i}", 1_000, 2_000) for i in range(3)]
    for other in others:
        kept.principal(other, 1_500_000)
    assert list(kept.kept) == others[1:]
