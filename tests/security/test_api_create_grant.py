"""Browser tokens that may create connections (the page's provider picker), as a person holding a leaked
one would try them: create in another account, of another provider, more than the grant, in an account
that is full, or with a grant the server never issued. Each refusal is a 4xx with a reason code and
creates nothing; the real services (status API, Redis) answer."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest

from hookstatus_client import HookStatusClient, HookStatusError
from services.status_api.config import DEV_TOKEN_SIGNING_KEY
from tests.signing import standard_webhooks_headers
from tests.system import TOKEN, System, SystemWith


async def grant_token(system: System, account: str, **create: Any) -> str:
    status, data = await system.api("POST", f"/v1/accounts/{account}/tokens", json={"create": create})
    assert status == 201, data
    return str(data["token"])


async def as_browser(system: System, token: str, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with system.session.request(method, system.api_url + path,
                                      headers={"Authorization": f"Bearer {token}"}, **kw) as resp:
        return resp.status, await resp.json(content_type=None)


async def account_ids(system: System, account: str) -> list[str]:
    status, data = await system.api("GET", "/v1/connections", params={"account_id": account})
    assert status == 200
    return [c["id"] for c in data["connections"]]


def code(data: Any) -> str:
    return str(data["error"]["code"])


async def test_a_granted_token_creates_in_its_account_and_sees_the_secret_once(system: System) -> None:
    token = await grant_token(system, "acct-g1", providers=["standard-webhooks", "github"], limit=2)
    status, me = await as_browser(system, token, "GET", "/v1/me")
    assert status == 200
    assert me == {"kind": "browser", "account_id": "acct-g1",
                  "create": {"providers": ["github", "standard-webhooks"], "limit": 2, "remaining": 2}}

    status, created = await as_browser(system, token, "POST", "/v1/connections",
                                       json={"account_id": "acct-g1", "provider": "standard-webhooks"})
    assert status == 201, created
    assert created["state"] == "pending" and created["secret"].startswith("whsec_")
    assert created["webhook_url"].endswith(f"/hooks/{created['id']}")
    assert await account_ids(system, "acct-g1") == [created["id"]]
    _, read = await as_browser(system, token, "GET", f"/v1/connections/{created['id']}")
    assert "secret" not in read  # shown once, in the answer that created it
    assert (await as_browser(system, token, "GET", "/v1/me"))[1]["create"]["remaining"] == 1


async def test_a_token_without_a_grant_is_refused_with_a_reason(system: System) -> None:
    token = await system.browser_token("acct-g2")
    assert (await as_browser(system, token, "GET", "/v1/me"))[1]["create"] is None
    status, data = await as_browser(system, token, "POST", "/v1/connections",
                                    json={"account_id": "acct-g2", "provider": "standard-webhooks"})
    assert (status, code(data)) == (403, "create_not_allowed")
    assert await account_ids(system, "acct-g2") == []


async def test_a_grant_is_bounded_to_its_account_providers_and_limit(system: System) -> None:
    token = await grant_token(system, "acct-g3", providers=["standard-webhooks"], limit=2)

    status, data = await as_browser(system, token, "POST", "/v1/connections",
                                    json={"account_id": "acct-other", "provider": "standard-webhooks"})
    assert (status, code(data)) == (404, "account_not_found")
    status, data = await as_browser(system, token, "POST", "/v1/connections",
                                    json={"account_id": "acct-g3", "provider": "stripe"})
    assert (status, code(data)) == (403, "provider_not_allowed")
    # A refused body (a malformed secret) counts nothing against the limit.
    status, data = await as_browser(system, token, "POST", "/v1/connections",
                                    json={"account_id": "acct-g3", "provider": "standard-webhooks", "secret": "x"})
    assert (status, code(data)) == (400, "invalid_secret")
    assert (await as_browser(system, token, "GET", "/v1/me"))[1]["create"]["remaining"] == 2

    body = {"account_id": "acct-g3", "provider": "standard-webhooks"}
    for _ in range(2):
        assert (await as_browser(system, token, "POST", "/v1/connections", json=body))[0] == 201
    status, data = await as_browser(system, token, "POST", "/v1/connections", json=body)
    assert (status, code(data)) == (403, "create_limit_reached")
    assert (await as_browser(system, token, "GET", "/v1/me"))[1]["create"]["remaining"] == 0
    assert len(await account_ids(system, "acct-g3")) == 2
    assert await account_ids(system, "acct-other") == []
    # Another token of the same grant has its own count; the service token is never limited.
    fresh = await grant_token(system, "acct-g3", providers=["standard-webhooks"], limit=1)
    assert (await as_browser(system, fresh, "POST", "/v1/connections", json=body))[0] == 201
    assert (await system.api("POST", "/v1/connections", json=body))[0] == 201


async def test_the_creating_token_may_set_the_providers_secret_until_the_connection_verifies(
    system: System,
) -> None:
    token = await grant_token(system, "acct-g4")
    status, created = await as_browser(system, token, "POST", "/v1/connections",
                                       json={"account_id": "acct-g4", "provider": "standard-webhooks"})
    assert status == 201
    cid = created["id"]
    others = {
        "another granted token": await grant_token(system, "acct-g4", limit=2),
        "a token without a grant": await system.browser_token("acct-g4"),
    }
    providers_secret = "whsec_" + base64.b64encode(b"the provider's own secret, 32b!!").decode()
    for who, other in others.items():
        status, data = await as_browser(system, other, "POST", f"/v1/connections/{cid}/reconnect",
                                        json={"secret": providers_secret})
        assert (status, code(data)) == (403, "service_token_required"), who
    product_made = await system.create(account_id="acct-g4")
    status, data = await as_browser(system, token, "POST", f"/v1/connections/{product_made['id']}/reconnect",
                                    json={"secret": providers_secret})
    assert (status, code(data)) == (403, "service_token_required")

    # Its own connection, never verified: the person pastes the provider's secret.
    status, view = await as_browser(system, token, "POST", f"/v1/connections/{cid}/reconnect",
                                    json={"secret": providers_secret})
    assert status == 200 and view["state"] == "pending" and "secret" not in view
    body = b'{"type": "ping"}'
    headers = standard_webhooks_headers(providers_secret, body, f"msg_{uuid.uuid4().hex}")
    assert (await system.post_hook(created["webhook_url"], body, headers))[0] == 202
    await system.wait_for(cid, lambda v: v["state"] == "connected")

    # Once it worked, its secret is the product's to change.
    status, data = await as_browser(system, token, "POST", f"/v1/connections/{cid}/reconnect",
                                    json={"secret": created["secret"]})
    assert (status, code(data)) == (403, "service_token_required")
    assert (await system.get(cid))["state"] == "connected"
    for method, path in (("DELETE", f"/v1/connections/{cid}"), ("POST", f"/v1/connections/{cid}/purge"),
                         ("POST", "/v1/accounts/acct-g4/tokens")):
        assert (await as_browser(system, token, method, path, json={}))[0] == 404


async def test_minting_a_grant_checks_it(system: System) -> None:
    for create, expected in (({"providers": ["no-such-provider"]}, "unknown_provider"),
                             ({"limit": 11}, "invalid_field"), ({"limit": 0}, "invalid_field"),
                             ({"providers": []}, "invalid_field"), ({"everything": True}, "unknown_field")):
        status, data = await system.api("POST", "/v1/accounts/acct-g5/tokens", json={"create": create})
        assert (status, code(data)) == (400, expected), create


def _signed(**claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"aud": "hookstatus-page", "sub": "acct-g6", "iat": now, "exp": now + 600, **claims},
                      DEV_TOKEN_SIGNING_KEY, algorithm="HS256")


@pytest.mark.parametrize("claims", [
    {"scope": "connections:create", "create_limit": 11},  # over MAX_CREATES_PER_TOKEN (10)
    {"scope": "connections:create"},  # a grant without its limit
    {"scope": "connections:delete", "create_limit": 1},  # a power the server does not know
    {"create_limit": 3},  # a limit without the scope
    {"scope": "connections:create", "create_limit": True},
    {"scope": "connections:create", "create_limit": 1, "providers": "stripe"},
])
async def test_a_grant_the_server_would_not_issue_is_an_invalid_token(system: System, claims: dict[str, Any]) -> None:
    status, data = await as_browser(system, _signed(**claims), "GET", "/v1/me")
    assert (status, code(data)) == (401, "invalid_token")


async def test_a_grant_minted_by_the_product_with_its_own_jwt_library_works(system: System) -> None:
    token = _signed(scope="connections:create", create_limit=1, providers=["github"])
    status, created = await as_browser(system, token, "POST", "/v1/connections",
                                       json={"account_id": "acct-g6", "provider": "github"})
    assert status == 201, created


@pytest.fixture
async def small_accounts(system_with: SystemWith) -> AsyncIterator[System]:
    async with system_with(status_api={"max_connections_per_account": 2}) as running:
        yield running


async def test_no_browser_token_fills_an_account_past_its_bound(small_accounts: System) -> None:
    system = small_accounts
    body = {"account_id": "acct-g7", "provider": "standard-webhooks"}
    await system.create(account_id="acct-g7")
    first = await grant_token(system, "acct-g7", limit=5)
    assert (await as_browser(system, first, "POST", "/v1/connections", json=body))[0] == 201
    status, data = await as_browser(system, first, "POST", "/v1/connections", json=body)
    assert (status, code(data)) == (403, "too_many_connections")
    assert len(await account_ids(system, "acct-g7")) == 2
    assert (await as_browser(system, first, "GET", "/v1/me"))[1]["create"]["remaining"] == 4
    assert (await system.api("POST", "/v1/connections", json=body))[0] == 201  # the product decides for itself


async def test_the_python_client_mints_a_grant(system: System) -> None:
    async with HookStatusClient(system.api_url, TOKEN, session=system.session) as api:
        minted = await api.create_browser_token("acct-g8", create_providers=["github"], create_limit=1)
    async with HookStatusClient(system.api_url, minted["token"], session=system.session) as page:
        created = await page.create_connection("acct-g8", "github")
        assert created["secret"]
        with pytest.raises(HookStatusError) as refused:
            await page.create_connection("acct-g8", "github")
    assert (refused.value.status, refused.value.code) == (403, "create_limit_reached")


async def test_two_tokens_minted_alike_in_the_same_second_are_two_tokens(system: System) -> None:
    """Same account, same grant, same second: still two tokens, each with its own create count (a
    token's limits are counted by the token; identical tokens would share them)."""
    grant = {"providers": ["standard-webhooks"], "limit": 1}
    for _ in range(5):  # minted back to back: the same second, nearly always at once
        first, second = await grant_token(system, "acct-g9", **grant), await grant_token(system, "acct-g9", **grant)
        iats = [jwt.decode(t, options={"verify_signature": False})["iat"] for t in (first, second)]
        if iats[0] == iats[1]:
            break
    assert iats[0] == iats[1], "could not mint two tokens within one second"
    assert first != second
    body = {"account_id": "acct-g9", "provider": "standard-webhooks"}
    assert (await as_browser(system, first, "POST", "/v1/connections", json=body))[0] == 201
    status, data = await as_browser(system, first, "POST", "/v1/connections", json=body)
    assert (status, code(data)) == (403, "create_limit_reached")
    assert (await as_browser(system, second, "GET", "/v1/me"))[1]["create"]["remaining"] == 1
    assert (await as_browser(system, second, "POST", "/v1/connections", json=body))[0] == 201
