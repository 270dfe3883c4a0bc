"""The one schema of the status API (services/status_api/schema.py): the committed openapi.json and
hookstatus_client/types.py are what it generates, the client stands without the server, and what the
running API serves in every state validates against the response models, strictly."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from hookstatus_client import HookStatusClient
from services.status_api import schema as s
from services.status_api import schema_gen
from tests.signing import standard_webhooks_headers
from tests.system import TOKEN, System

OTHER_SECRET = "whsec_" + "QmFkU2VjcmV0Rm9yVGVzdHNPbmx5MTIzNDU2Nzg="
GUARD_S = 15  # against hanging only


# --- the committed artifacts -----------------------------------------------------------------------

@pytest.mark.parametrize("path", [schema_gen.OPENAPI_PATH, schema_gen.TYPES_PATH], ids=lambda p: p.name)
def test_the_committed_file_is_what_the_models_generate(path: Path) -> None:
    expected = schema_gen.artifacts()[path]
    assert path.read_text(encoding="utf-8") == expected, f"{path.name} is stale: run `make schema`"


def test_a_stale_file_is_noticed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    types_copy, openapi_copy = tmp_path / "types.py", tmp_path / "openapi.json"
    types_copy.write_text(schema_gen.TYPES_PATH.read_text(encoding="utf-8").replace("version: int", "version: str"))
    openapi_copy.write_text(schema_gen.OPENAPI_PATH.read_text(encoding="utf-8"))
    monkeypatch.setattr(schema_gen, "TYPES_PATH", types_copy)
    monkeypatch.setattr(schema_gen, "OPENAPI_PATH", openapi_copy)
    monkeypatch.setattr(schema_gen, "ROOT", tmp_path)
    assert schema_gen.stale() == [types_copy]
    assert schema_gen.main(["--check"]) == 1
    assert schema_gen.main([]) == 0
    assert schema_gen.stale() == []


def test_the_document_describes_every_model_and_what_schemathesis_follows() -> None:
    doc = schema_gen.openapi_document()
    schemas = doc["components"]["schemas"]
    for model in (*s.REQUEST_MODELS, *s.RESPONSE_MODELS):
        assert model.__name__ in schemas
    assert schemas["Connection"]["additionalProperties"] is False
    assert "secret" not in schemas["Connection"]["properties"]
    assert "secret" in schemas["CreatedConnection"]["required"]
    create = doc["paths"]["/v1/connections"]["post"]
    assert set(create["responses"]["201"]["links"]) == {
        "GetConnection", "ListDeliveries", "Reconnect", "StartTest", "Disconnect"}
    assert doc["paths"]["/v1/connections/{connection_id}/tests"]["post"]["responses"]["201"]["links"]["GetTest"]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schemas["NewConnection"]["properties"]["account_id"]["examples"] == ["acct_42"]


def test_the_client_needs_neither_the_server_nor_pydantic() -> None:
    code = ("import sys, hookstatus_client; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('services', 'shared', 'pydantic')); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- what the running API serves -------------------------------------------------------------------

async def _served(system: System, model: type[BaseModel], method: str, path: str, status: int,
                  token: str = TOKEN, **kw: Any) -> dict[str, Any]:
    """One real call; its body must validate as ``model`` (no extra field, no coerced type)."""
    headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
    async with system.session.request(method, system.api_url + path, headers=headers, **kw) as resp:
        body = await resp.read()
        assert resp.status == status, body
    return model.model_validate_json(body, strict=True).model_dump(mode="json")


async def _hook(system: System, conn: dict[str, Any], secret: str) -> None:
    body = b'{"type": "invoice.paid"}'
    headers = standard_webhooks_headers(secret, body, f"msg_{uuid.uuid4().hex}")
    status, _ = await system.post_hook(conn["webhook_url"], body, headers)
    assert status in (202, 401)


async def test_connections_in_every_state_conform(system: System) -> None:
    account = f"acct-{uuid.uuid4().hex[:8]}"
    conn = await _served(system, s.CreatedConnection, "POST", "/v1/connections", 201,
                         json={"account_id": account, "provider": "standard-webhooks", "timeout_s": 300,
                               "expected_interval_s": 3600})
    cid = conn["id"]
    pending = await _served(system, s.Connection, "GET", f"/v1/connections/{cid}", 200)
    assert pending["state"] == "pending" and pending["pending_deadline"]

    test = await _served(system, s.ConnectionTest, "POST", f"/v1/connections/{cid}/tests", 201, json={})
    await _served(system, s.ConnectionTest, "GET", f"/v1/connections/{cid}/tests/{test['id']}", 200)
    assert (await _served(system, s.Connection, "GET", f"/v1/connections/{cid}", 200))["last_test"]

    await _hook(system, conn, conn["secret"])
    await system.wait_for(cid, lambda v: v["state"] == "connected")
    connected = await _served(system, s.Connection, "GET", f"/v1/connections/{cid}", 200)
    assert connected["health"] == "ok" and connected["last_test"]["state"] == "passed"

    for _ in range(3):  # failing: sustained rejection without verified traffic (3 in a row)
        await _hook(system, conn, OTHER_SECRET)
    await system.wait_for(cid, lambda v: v["health"] == "failing")
    failing = await _served(system, s.Connection, "GET", f"/v1/connections/{cid}", 200)
    assert failing["last_error"]["code"]
    deliveries = await _served(system, s.DeliveryList, "GET", f"/v1/connections/{cid}/deliveries", 200)
    assert {d["outcome"] for d in deliveries["deliveries"]} == {"verified", "rejected"}

    rotated = await _served(system, s.Connection, "POST", f"/v1/connections/{cid}/reconnect", 200,
                            json={"secret": OTHER_SECRET, "timeout_s": 60})
    assert rotated["state"] == "pending" and rotated["previous_secret_active"] is True
    gone = await _served(system, s.Connection, "DELETE", f"/v1/connections/{cid}", 200)
    assert gone["state"] == "disconnected"
    listed = await _served(system, s.ConnectionList, "GET", f"/v1/connections?account_id={account}", 200)
    assert [c["id"] for c in listed["connections"]] == [cid]


async def test_failed_and_silent_connections_and_a_failed_test_conform(system: System) -> None:
    conn = await system.create(timeout_s=1)
    await _hook(system, conn, OTHER_SECRET)
    await system.wait_for(conn["id"], lambda v: v["state"] == "failed")
    failed = await _served(system, s.Connection, "GET", f"/v1/connections/{conn['id']}", 200)
    assert failed["failed_detail"]["code"] == "signature_mismatch"
    assert failed["cta"]["action"] == "reconnect"

    quiet = await system.create(expected_interval_s=1)
    await _hook(system, quiet, quiet["secret"])
    await system.wait_for(quiet["id"], lambda v: v["state"] == "connected")
    test = await _served(system, s.ConnectionTest, "POST", f"/v1/connections/{quiet['id']}/tests", 201,
                         json={"timeout_s": 1})
    await system.wait_for(quiet["id"], lambda v: v["health"] == "silent" and v["last_test"]["state"] == "failed")
    silent = await _served(system, s.Connection, "GET", f"/v1/connections/{quiet['id']}", 200)
    assert silent["display"] == "silent" and silent["last_test"]["reason"] == "test_no_events"
    ended = await _served(system, s.ConnectionTest, "GET", f"/v1/connections/{quiet['id']}/tests/{test['id']}", 200)
    assert ended["state"] == "failed" and ended["finished_at"]


async def test_tokens_providers_health_and_errors_conform(system: System) -> None:
    token = await _served(system, s.BrowserToken, "POST", "/v1/accounts/acct-s/tokens", 201, json={"ttl_s": 60})
    assert (await _served(system, s.Me, "GET", "/v1/me", 200, token=token["token"]))["account_id"] == "acct-s"
    assert (await _served(system, s.Me, "GET", "/v1/me", 200))["kind"] == "service"
    providers = await _served(system, s.ProviderList, "GET", "/v1/providers", 200)
    assert any(p["name"] == "standard-webhooks" for p in providers["providers"])
    await _served(system, s.Health, "GET", "/healthz", 200)
    await _served(system, s.Ready, "GET", "/readyz", 200)
    for method, path, status, kw in (
        ("POST", "/v1/connections", 400, {"data": b"{oops"}),
        ("POST", "/v1/connections", 400, {"json": {"account_id": "a", "provider": "x", "colour": 1}}),
        ("GET", f"/v1/connections/{uuid.uuid4().hex}", 404, {}),
        ("PUT", "/v1/connections", 405, {}),
    ):
        error = await _served(system, s.Error, method, path, status, **kw)
        assert error["error"]["code"] and error["error"]["message"]
    await _served(system, s.Error, "GET", "/v1/providers", 401, token="not-a-token")


async def test_streamed_connections_conform(system: System) -> None:
    conn = await system.create()
    async with HookStatusClient(system.api_url, TOKEN) as client, asyncio.timeout(GUARD_S):
        events = client.stream(connection_id=conn["id"], resume=False)
        first = await anext(events)
        await events.aclose()
    assert first.event == "connection"
    assert s.Connection.model_validate(first.data, strict=True).id == conn["id"]
