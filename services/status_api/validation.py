"""Reading and checking request bodies. Everything wrong becomes a ``BadRequest`` with a code."""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from shared.errors import BadRequest

ACCOUNT_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")


async def json_object(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    raw = await request.read()
    if optional and not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("the request body is not valid JSON", code="malformed_json") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object", code="invalid_body")
    return data


def only_fields(data: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}", code="unknown_field")


def account_id(value: Any, field: str = "account_id") -> str:
    if not isinstance(value, str) or not ACCOUNT_ID.match(value):
        raise BadRequest(
            f"{field} must be 1-128 characters of letters, digits and _.:@-", code="invalid_account_id"
        )
    return value


def string(data: dict[str, Any], field: str, *, required: bool = False, max_len: int = 4096) -> str | None:
    value = data.get(field)
    if value is None:
        if required:
            raise BadRequest(f"{field} is required", code="missing_field")
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise BadRequest(f"{field} must be a non-empty string of at most {max_len} characters",
                         code="invalid_field")
    return value


def integer(data: dict[str, Any], field: str, low: int, high: int) -> int | None:
    value = data.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{field} must be an integer from {low} to {high}", code="invalid_field")
    return value


def settings_object(data: dict[str, Any]) -> dict[str, Any] | None:
    value = data.get("settings")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest("settings must be a JSON object", code="invalid_settings")
    return value
