"""Writes what ``schema.py`` defines in two more forms: the OpenAPI 3.1 document (``openapi.json``,
served at ``/openapi.json``) and the typed client's TypedDicts (``hookstatus_client/types.py``).

    python -m services.status_api.schema_gen           # write both (``make schema``)
    python -m services.status_api.schema_gen --check   # exit 1 when a committed file is stale

The paths, their parameters, the links between operations (schemathesis follows them in its stateful
tests) and the error answers are written here; every body and answer is a model's JSON Schema.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.status_api import schema as s
from services.status_api.client_types import render_types

ROOT = Path(__file__).resolve().parents[2]
OPENAPI_PATH = Path(__file__).with_name("openapi.json")
TYPES_PATH = ROOT / "hookstatus_client" / "types.py"
REF = "#/components/schemas/{model}"
Json = dict[str, Any]

DESCRIPTION = (
    "Create connections, read their live status, test them. Every /v1 call needs `Authorization: Bearer "
    "<token>`: a service token (the product backend) or a browser token scoped to one account (minted by "
    "POST /v1/accounts/{account_id}/tokens). A browser token gets 404 for anything outside its account. "
    "Every error is `{\"error\": {\"code\", \"message\"}}`."
)


# --- pieces of operations ---------------------------------------------------------------------------

def _ref(model: type[BaseModel]) -> Json:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel]) -> Json:
    return {"application/json": {"schema": _ref(model)}}


def _answer(model: type[BaseModel], description: str = "OK", links: Json | None = None) -> Json:
    answer: Json = {"description": description, "content": _json(model)}
    if links:
        answer["links"] = links
    return answer


def _errors(*statuses: int) -> Json:
    return {str(status): {"$ref": "#/components/responses/Error"} for status in statuses}


def _body(model: type[BaseModel], *, required: bool) -> Json:
    return {"required": required, "content": _json(model)}


def _path_param(name: str, description: str | None = None) -> Json:
    param: Json = {"name": name, "in": "path", "required": True}
    if description:
        param["description"] = description
    param["schema"] = {"type": "string"}
    return param


CONNECTION_ID = _path_param("connection_id", s.CONNECTION_ID_WORDS)
ACCOUNT_ID = _path_param("account_id", s.ACCOUNT_ID_WORDS)
LAST_EVENT_ID = {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}}
EVENT_STREAM = {"description": "An event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}


def _links_from_connection() -> Json:
    by_id = {"connection_id": "$response.body#/id"}
    return {
        "GetConnection": {"operationId": "getConnection", "parameters": by_id},
        "ListDeliveries": {"operationId": "listDeliveries", "parameters": by_id},
        "Reconnect": {"operationId": "reconnectConnection", "parameters": by_id},
        "StartTest": {"operationId": "startTest", "parameters": by_id},
        "Disconnect": {"operationId": "disconnectConnection", "parameters": by_id},
    }


def _link_to_test() -> Json:
    return {"GetTest": {"operationId": "getTest", "parameters": {
        "connection_id": "$response.body#/connection_id", "test_id": "$response.body#/id"}}}


# --- the paths ---------------------------------------------------------------------------------------

def _connection_paths() -> Json:
    return {
        "/v1/connections": {
            "post": {
                "operationId": "createConnection",
                "summary": "Create a connection (the service token, or a browser token with a create grant: its "
                           "account, its providers, up to its limit). The only answer that carries the secret.",
                "requestBody": _body(s.NewConnection, required=True),
                "responses": {"201": _answer(s.CreatedConnection, "Created; `secret` is shown this once",
                                             _links_from_connection()),
                              **_errors(400, 401, 403, 404, 413, 503)},
            },
            "get": {
                "operationId": "listConnections",
                "summary": "The connections of one account.",
                "parameters": [{"name": "account_id", "in": "query", "required": False,
                                "schema": {"type": "string"},
                                "description": "Required with a service token; a browser token defaults to "
                                               "its own account."}],
                "responses": {"200": _answer(s.ConnectionList), **_errors(400, 401, 503)},
            },
        },
        "/v1/connections/{connection_id}": {
            "parameters": [CONNECTION_ID],
            "get": {
                "operationId": "getConnection",
                "summary": "One connection's status.",
                "responses": {"200": _answer(s.Connection), **_errors(401, 404, 503)},
            },
            "delete": {
                "operationId": "disconnectConnection",
                "summary": "Disconnect (service token only).",
                "responses": {"200": _answer(s.Connection), **_errors(401, 404, 503)},
            },
        },
        "/v1/connections/{connection_id}/purge": {
            "parameters": [CONNECTION_ID],
            "post": {
                "operationId": "purgeConnection",
                "summary": "Erase the connection and everything about it, now (service token only): its "
                           "status, deliveries, tests, dedupe keys and its place in its account's list.",
                "responses": {"204": {"description": "Purged"}, **_errors(401, 404, 503)},
            },
        },
        "/v1/connections/{connection_id}/reconnect": {
            "parameters": [CONNECTION_ID],
            "post": {
                "operationId": "reconnectConnection",
                "summary": "Back to pending, optionally with a new secret (the previous one keeps verifying "
                           "for a while).",
                "requestBody": _body(s.Reconnect, required=False),
                "responses": {"200": _answer(s.Connection), **_errors(400, 401, 403, 404, 413, 503)},
            },
        },
        "/v1/connections/{connection_id}/deliveries": {
            "parameters": [CONNECTION_ID],
            "get": {
                "operationId": "listDeliveries",
                "summary": "The most recent deliveries (never a body or a secret).",
                "responses": {"200": _answer(s.DeliveryList), **_errors(401, 404, 503)},
            },
        },
    }


def _held_paths() -> Json:
    return {
        "/v1/connections/{connection_id}/held": {
            "parameters": [CONNECTION_ID],
            "get": {
                "operationId": "listHeldDeliveries",
                "summary": "The rejected requests held to be verified again after a fix (never a body).",
                "responses": {"200": _answer(s.HeldDeliveryList), **_errors(401, 404, 503)},
            },
        },
        "/v1/connections/{connection_id}/reverify": {
            "parameters": [CONNECTION_ID],
            "post": {
                "operationId": "reverifyHeldDeliveries",
                "summary": "Verify the held requests again with the connection's secret and settings as they "
                           "are now; those that verify are applied as verified deliveries (recovered).",
                "responses": {"200": _answer(s.ReverifyResult), **_errors(401, 404, 409, 429, 503)},
            },
        },
    }


def _test_paths() -> Json:
    return {
        "/v1/connections/{connection_id}/tests": {
            "parameters": [CONNECTION_ID],
            "post": {
                "operationId": "startTest",
                "summary": "Open a test window: the next verified event passes it.",
                "requestBody": _body(s.NewTest, required=False),
                "responses": {"201": _answer(s.ConnectionTest, links=_link_to_test()),
                              **_errors(400, 401, 404, 409, 413, 429, 503)},
            },
        },
        "/v1/connections/{connection_id}/tests/{test_id}": {
            "parameters": [CONNECTION_ID, _path_param("test_id")],
            "get": {
                "operationId": "getTest",
                "summary": "One test window's result.",
                "responses": {"200": _answer(s.ConnectionTest), **_errors(401, 404, 503)},
            },
        },
    }


def _stream_paths() -> Json:
    return {
        "/v1/connections/{connection_id}/stream": {
            "parameters": [CONNECTION_ID, LAST_EVENT_ID],
            "get": {
                "operationId": "streamConnection",
                "summary": "Server-Sent Events: the connection's status now and at every change (`event: "
                           "connection`, `event: ready`). Resume with Last-Event-ID.",
                "x-streaming": True,
                "responses": {"200": EVENT_STREAM, **_errors(401, 404, 429, 503)},
            },
        },
        "/v1/accounts/{account_id}/stream": {
            "parameters": [ACCOUNT_ID, LAST_EVENT_ID],
            "get": {
                "operationId": "streamAccount",
                "summary": "Server-Sent Events for every connection of an account.",
                "x-streaming": True,
                "responses": {"200": EVENT_STREAM, **_errors(400, 401, 404, 429, 503)},
            },
        },
    }


ENDPOINT_ID = _path_param("endpoint_id", "A notification endpoint id: 32 lowercase hex characters.")


def _notification_paths() -> Json:
    by_id = {"endpoint_id": "$response.body#/id"}
    links = {"GetNotificationEndpoint": {"operationId": "getNotificationEndpoint", "parameters": by_id},
             "ListNotificationAttempts": {"operationId": "listNotificationAttempts", "parameters": by_id},
             "DeleteNotificationEndpoint": {"operationId": "deleteNotificationEndpoint", "parameters": by_id}}
    return {
        "/v1/notification-endpoints": {
            "post": {
                "operationId": "createNotificationEndpoint",
                "summary": "Register where the product receives notifications (service token only). The only "
                           "answer that carries the secret.",
                "requestBody": _body(s.NewNotificationEndpoint, required=True),
                "responses": {"201": _answer(s.CreatedNotificationEndpoint, "Created; `secret` is shown this once",
                                             links),
                              **_errors(400, 401, 403, 413, 503)},
            },
            "get": {
                "operationId": "listNotificationEndpoints",
                "summary": "The notification endpoints (service token only).",
                "parameters": [{"name": "account_id", "in": "query", "required": False,
                                "schema": {"type": "string"},
                                "description": "Only the endpoints registered for this account."}],
                "responses": {"200": _answer(s.NotificationEndpointList), **_errors(400, 401, 403, 503)},
            },
        },
        "/v1/notification-endpoints/{endpoint_id}": {
            "parameters": [ENDPOINT_ID],
            "get": {
                "operationId": "getNotificationEndpoint",
                "summary": "One notification endpoint (never its secret).",
                "responses": {"200": _answer(s.NotificationEndpoint), **_errors(401, 403, 404, 503)},
            },
            "delete": {
                "operationId": "deleteNotificationEndpoint",
                "summary": "Remove a notification endpoint; nothing more is sent to it.",
                "responses": {"204": {"description": "Deleted"}, **_errors(401, 403, 404, 503)},
            },
        },
        "/v1/notification-endpoints/{endpoint_id}/attempts": {
            "parameters": [ENDPOINT_ID],
            "get": {
                "operationId": "listNotificationAttempts",
                "summary": "The endpoint's latest delivery attempts, newest first.",
                "responses": {"200": _answer(s.NotificationAttemptList), **_errors(401, 403, 404, 503)},
            },
        },
        "/v1/notification-endpoints/{endpoint_id}/enable": {
            "parameters": [ENDPOINT_ID],
            "post": {
                "operationId": "enableNotificationEndpoint",
                "summary": "Enable an endpoint again (e.g. one the notifier disabled after failing), its "
                           "failure count cleared.",
                "responses": {"200": _answer(s.NotificationEndpoint), **_errors(401, 403, 404, 503)},
            },
        },
    }


def _other_paths() -> Json:
    public: list[Any] = []  # no token needed
    return {
        "/v1/accounts/{account_id}/tokens": {
            "parameters": [ACCOUNT_ID],
            "post": {
                "operationId": "createBrowserToken",
                "summary": "Mint a short-lived browser token for one account (service token only).",
                "requestBody": _body(s.NewBrowserToken, required=False),
                "responses": {"201": _answer(s.BrowserToken), **_errors(400, 401, 404, 413, 503)},
            },
        },
        "/v1/providers": {"get": {
            "operationId": "listProviders",
            "summary": "The supported providers and what their setup needs.",
            "parameters": [{"name": "q", "in": "query", "required": False, "schema": {"type": "string",
                            "maxLength": 100}, "description": "Words that must all appear in the id, title or "
                            "category (case-insensitive)"}],
            "responses": {"200": _answer(s.ProviderList), **_errors(401)},
        }},
        "/v1/me": {"get": {
            "operationId": "whoAmI",
            "summary": "What the token is: a service token or a browser token of one account, and what a "
                       "browser token may still create.",
            "responses": {"200": _answer(s.Me), **_errors(401)},
        }},
        "/openapi.json": {"get": {
            "operationId": "openapi", "security": public, "summary": "This document.",
            "responses": {"200": {"description": "OpenAPI 3.1",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}},
        }},
        "/healthz": {"get": {
            "operationId": "healthz", "security": public, "summary": "The process is up.",
            "responses": {"200": _answer(s.Health)},
        }},
        "/readyz": {"get": {
            "operationId": "readyz", "security": public, "summary": "Redis and RabbitMQ are reachable.",
            "responses": {"200": _answer(s.Ready), "503": _answer(s.Ready, "Not ready")},
        }},
    }


# --- the document ----------------------------------------------------------------------------------

def _without_titles(node: Any) -> Any:
    """pydantic titles every schema after its Python name; the document reads better without them (a
    property *named* ``title`` is a dict, so it stays)."""
    if isinstance(node, dict):
        return {k: _without_titles(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_without_titles(v) for v in node]
    return node


def component_schemas() -> Json:
    models = [(m, "validation") for m in s.REQUEST_MODELS] + [(m, "serialization") for m in s.RESPONSE_MODELS]
    _, top = models_json_schema(models, ref_template=REF)  # type: ignore[arg-type]
    schemas: Json = _without_titles(top["$defs"])
    return schemas


def openapi_document() -> Json:
    return {
        "openapi": "3.1.0",
        "info": {"title": "hookstatus status API", "version": "1", "description": DESCRIPTION},
        "security": [{"bearer": []}],
        "paths": {**_connection_paths(), **_held_paths(), **_test_paths(), **_stream_paths(), **_notification_paths(),
                  **_other_paths()},
        "components": {
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "A service token (STATUS_API_TOKEN) or a browser token (a JWT, HS256). "
                                "Only a browser token on the two stream routes may be sent as ?token= instead."}},
            "responses": {"Error": {"description": "An error", "content": _json(s.Error)}},
            "schemas": component_schemas(),
        },
    }


def openapi_text() -> str:
    return json.dumps(openapi_document(), indent=1, ensure_ascii=False) + "\n"


def artifacts() -> dict[Path, str]:
    """Each generated file and what it should contain."""
    return {OPENAPI_PATH: openapi_text(), TYPES_PATH: render_types()}


def stale() -> list[Path]:
    return [path for path, text in artifacts().items()
            if not path.exists() or path.read_text(encoding="utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when a generated file is stale")
    args = parser.parse_args(argv)
    if args.check:
        old = stale()
        for path in old:
            print(f"stale: {path.relative_to(ROOT)} (run `make schema`)", file=sys.stderr)
        return 1 if old else 0
    for path, text in artifacts().items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
