"""How the page's files are served (no browser needed): headers, no path escapes, and /v1/me."""

from __future__ import annotations

import pytest

from tests.system import System


async def test_the_page_is_served_without_a_token_with_strict_headers(system: System) -> None:
    async with system.session.get(f"{system.api_url}/ui/?token=whatever") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        body = await resp.text()
        csp = resp.headers["Content-Security-Policy"]
        assert resp.headers["Referrer-Policy"] == "no-referrer"  # the URL carries a token
        assert resp.headers["Cache-Control"] == "no-store"
    assert "<integration-status" in body
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    async with system.session.get(f"{system.api_url}/ui/integration-status.js") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/javascript"
        assert "customElements.define('integration-status'" in await resp.text()


async def test_ui_without_slash_redirects_keeping_the_token(system: System) -> None:
    async with system.session.get(f"{system.api_url}/ui?token=abc", allow_redirects=False) as resp:
        assert resp.status == 308
        assert resp.headers["Location"] == "/ui/?token=abc"


@pytest.mark.parametrize(
    "path", ["/ui/..%2Fui.py", "/ui/%2E%2E%2Fapp.py", "/ui/.hidden.js", "/ui/nope.js", "/ui/__init__.py"]
)
async def test_only_the_ui_files_are_served(system: System, path: str) -> None:
    async with system.session.get(system.api_url + path) as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"


async def test_me_names_the_tokens_account(system: System) -> None:
    token = await system.browser_token("acct-me")
    status, me = await system.api("GET", "/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert (status, me) == (200, {"kind": "browser", "account_id": "acct-me", "create": None})
    status, me = await system.api("GET", "/v1/me")
    assert (status, me["kind"], me["account_id"]) == (200, "service", None)
    async with system.session.get(f"{system.api_url}/v1/me") as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "missing_token"
