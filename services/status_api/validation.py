"""Reading and checking requests with the models of ``schema.py``. Everything wrong becomes a
``BadRequest`` with a reason code:

- ``malformed_json``: the body is not JSON; ``invalid_body``: it is not a JSON object;
- ``unknown_field``: a field the model does not have (all of them are named);
- ``missing_field``: a required field is absent or null;
- ``invalid_account_id``, ``invalid_settings``: those fields, whatever is wrong with them;
- ``invalid_field``: any other field of the wrong type or out of range.

Messages name the field and the rule, never the value given (it may be a secret).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from services.status_api.schema import ACCOUNT_ID_WORDS, AccountId, RequestModel
from shared.errors import BadRequest

M = TypeVar("M", bound=RequestModel)

FIELD_CODES = {"account_id": "invalid_account_id", "settings": "invalid_settings"}
FIELD_MESSAGES = {
    "account_id": f"account_id must be {ACCOUNT_ID_WORDS}",
    "settings": "settings must be a JSON object",
}
_ACCOUNT_ID: TypeAdapter[str] = TypeAdapter(AccountId, config={"strict": True})


async def body(request: web.Request, model: type[M], *, optional: bool = False,
               limits: Mapping[str, int] | None = None) -> M:
    """The request body as ``model``. ``optional``: an empty body is an empty object. ``limits``: upper
    bounds that are settings, by field name."""
    raw = await request.read()
    if optional and not raw.strip():
        raw = b"{}"
    return parse(raw, model, limits)


def parse(raw: bytes, model: type[M], limits: Mapping[str, int] | None = None) -> M:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("the request body is not valid JSON", code="malformed_json") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object", code="invalid_body")
    # null means absent: the models' optional fields default to None, required ones report missing.
    present = {name: value for name, value in data.items() if value is not None or name not in model.model_fields}
    try:
        return model.model_validate(present, strict=True, context=dict(limits or {}))
    except ValidationError as exc:
        raise _bad_request(exc, model) from None


def account_id(value: Any, field: str = "account_id") -> str:
    """An account id from a path or query string."""
    try:
        return _ACCOUNT_ID.validate_python(value)
    except ValidationError:
        raise BadRequest(f"{field} must be {ACCOUNT_ID_WORDS}", code="invalid_account_id") from None


def _bad_request(exc: ValidationError, model: type[RequestModel]) -> BadRequest:
    errors = exc.errors(include_url=False, include_input=False)
    unknown = sorted(_field(e) for e in errors if e["type"] == "extra_forbidden")
    if unknown:
        return BadRequest(f"unknown field(s): {', '.join(unknown)}", code="unknown_field")
    order = list(model.model_fields)
    first = min(errors, key=lambda e: order.index(_field(e)) if _field(e) in order else len(order))
    field = _field(first)
    if field in FIELD_CODES:
        return BadRequest(FIELD_MESSAGES[field], code=FIELD_CODES[field])
    if first["type"] == "missing":
        return BadRequest(f"{field} is required", code="missing_field")
    return BadRequest(f"{field}: {_lower_first(first['msg'])}", code="invalid_field")


def _field(error: ErrorDetails) -> str:
    return str(error["loc"][0]) if error["loc"] else "body"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
