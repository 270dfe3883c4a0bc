"""Renders the response models of ``schema.py`` as the typed client's TypedDicts
(``hookstatus_client/types.py``), so the client needs neither pydantic nor this package at run time.

Only the shapes below are rendered, in this order; a Literal equal to one of ``ALIASES`` is written as
that alias's name.
"""

from __future__ import annotations

import json
import textwrap
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from services.status_api import schema as s

ALIASES: dict[str, Any] = {
    "State": s.State,
    "Display": s.Display,
    "HealthState": s.HealthState,
    "TestState": s.TestState,
    "CtaAction": s.CtaAction,
    "Outcome": s.Outcome,
    "HopName": s.HopName,
}
MODELS: tuple[type[s.ResponseModel], ...] = (
    s.Cta, s.LastError, s.FailedDetail, s.Hops, s.LastTest, s.Silence, s.Rhythm, s.ConnectionTest,
    s.Connection, s.CreatedConnection,
    s.Delivery, s.Provider, s.BrowserToken, s.NotificationEndpoint, s.CreatedNotificationEndpoint,
    s.NotificationAttempt, s.HeldDelivery, s.ReverifyResult,
)
HEADER = '''"""The shapes the status API returns (see docs/API.md). Timestamps are ISO 8601 UTC strings.

Generated from services/status_api/schema.py by `make schema`; do not edit by hand.
"""

from __future__ import annotations

from typing import Literal, TypedDict
'''
WIDTH = 110


def render_types() -> str:
    aliases = "\n".join(f"{name} = {_literal(alias)}" for name, alias in ALIASES.items())
    parts = [f"{HEADER}\n{aliases}\n"]
    parts.extend(_typed_dict(model) for model in MODELS)
    return "\n\n".join(parts)


def _typed_dict(model: type[BaseModel]) -> str:
    base = next((b for b in model.__bases__ if b in MODELS), None)
    lines = [f"class {model.__name__}({base.__name__ if base else 'TypedDict'}):"]
    doc = (model.__doc__ or "").strip()
    if doc:
        lines.append(textwrap.indent(f'"""{textwrap.fill(doc, WIDTH - 4)}"""', "    "))
        lines.append("")
    inherited = set(base.model_fields) if base else set()
    fields = [(name, info) for name, info in model.model_fields.items() if name not in inherited]
    for name, info in fields:
        lines.extend(_field(name, info))
    if not fields:
        lines.append("    pass")
    return "\n".join(lines) + "\n"


def _field(name: str, info: FieldInfo) -> list[str]:
    comment = [f"    # {line}" for line in textwrap.wrap(info.description, WIDTH - 6)] if info.description else []
    return [*comment, f"    {name}: {_render(info.annotation)}"]


def _render(annotation: Any) -> str:
    origin = get_origin(annotation)
    if annotation is type(None) or annotation is None:
        return "None"
    if annotation in (str, int, bool, float):
        return str(annotation.__name__)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.__name__
    if origin is typing.Annotated:
        return _render(get_args(annotation)[0])
    if origin is Literal:
        return next((name for name, alias in ALIASES.items() if alias == annotation), _literal(annotation))
    if origin in (Union, types.UnionType):
        return " | ".join(_render(arg) for arg in get_args(annotation))
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_render(arg) for arg in get_args(annotation))}]"
    raise TypeError(f"cannot render {annotation!r} as a client type")


def _literal(alias: Any) -> str:
    return f"Literal[{', '.join(json.dumps(value) for value in get_args(alias))}]"
