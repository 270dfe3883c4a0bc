"""Reading the provider catalog once at start-up: the bundled ``catalog.toml`` and, when
``PROVIDER_CATALOG_EXTRA`` names one, a deployment's own file of extra presets (same format).

Every entry becomes an adapter of its family (``families``); the few providers whose scheme no family
describes name a class in ``CODE`` and keep their data in the catalog all the same. Adapters written
in code before the catalog (``shared/providers/<id>.py``) get their category, setup steps, docs link
and what they were checked against from the catalog's ``[adapters.<id>]`` tables.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shared.errors import ConfigError
from shared.providers.base import Provider
from shared.providers.catalog_code import CODE
from shared.providers.catalog_spec import CATEGORIES, CHECKED, Entry, parse_entry
from shared.providers.families import provider_class

BUNDLED = Path(__file__).with_name("catalog.toml")
EXTRA_ENV = "PROVIDER_CATALOG_EXTRA"


@dataclass(frozen=True, slots=True)
class AdapterMeta:
    """Catalog data for an adapter written in code."""

    category: str
    setup: tuple[str, ...]
    docs_url: str
    checked_against: str


@dataclass(frozen=True, slots=True)
class Catalog:
    entries: tuple[Entry, ...]
    adapters: Mapping[str, AdapterMeta]


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{EXTRA_ENV}: cannot read the provider catalog {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: the provider catalog is not valid TOML: {exc}") from exc


def parse(data: Mapping[str, Any], source: str) -> Catalog:
    unknown = sorted(set(data) - {"provider", "adapters"})
    if unknown:
        raise ConfigError(f"{source}: unknown top-level table {unknown[0]!r} (expected [[provider]] entries)")
    raw_entries = data.get("provider", [])
    if not isinstance(raw_entries, list) or not all(isinstance(e, dict) for e in raw_entries):
        raise ConfigError(f"{source}: 'provider' must be a list of [[provider]] tables")
    entries = tuple(parse_entry(raw, i, source) for i, raw in enumerate(raw_entries))
    adapters = {name: _adapter(name, raw, source) for name, raw in (data.get("adapters") or {}).items()}
    return Catalog(entries, adapters)


def _adapter(name: str, raw: Any, source: str) -> AdapterMeta:
    where = f"{source}: adapters.{name}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    category, setup = raw.get("category"), raw.get("setup")
    docs, checked = raw.get("docs"), raw.get("checked_against")
    if category not in CATEGORIES:
        raise ConfigError(f"{where}, field 'category': must be one of {', '.join(CATEGORIES)}")
    if not isinstance(setup, list) or not setup or not all(isinstance(s, str) and s for s in setup):
        raise ConfigError(f"{where}, field 'setup': must be a non-empty list of steps")
    if not isinstance(docs, str) or not docs.startswith("https://"):
        raise ConfigError(f"{where}, field 'docs': must be an https:// link")
    if not isinstance(checked, str) or not checked.startswith(CHECKED):
        raise ConfigError(f"{where}, field 'checked_against': must be sdk:, vector: or scheme:")
    return AdapterMeta(category, tuple(setup), docs, checked)


def load(extra: str | None = None) -> Catalog:
    """The bundled catalog plus the extra file (``PROVIDER_CATALOG_EXTRA`` when ``extra`` is None)."""
    catalog = parse(_read(BUNDLED), BUNDLED.name)
    path = os.environ.get(EXTRA_ENV, "") if extra is None else extra
    if not path.strip():
        return catalog
    more = parse(_read(Path(path.strip())), f"{EXTRA_ENV} ({path.strip()})")
    return Catalog(catalog.entries + more.entries, {**catalog.adapters, **more.adapters})


def build(catalog: Catalog, existing: Mapping[str, Provider]) -> dict[str, Provider]:
    """One adapter per entry; an id already taken (by code or an earlier entry) is a ``ConfigError``."""
    made: dict[str, Provider] = {}
    for entry in catalog.entries:
        if entry.id in existing or entry.id in made:
            raise ConfigError(f"provider catalog: the id {entry.id!r} is used twice; ids must be unique")
        made[entry.id] = provider_class(entry, CODE.get(entry.id))()
    return made


def describe_adapters(adapters: Mapping[str, AdapterMeta], providers: Iterable[Provider]) -> None:
    """Give code adapters their catalog data (category, setup steps, docs, checked against)."""
    for provider in providers:
        meta = adapters.get(provider.name)
        if meta is None or provider.info.category:
            continue
        type(provider).info = replace(provider.info, category=meta.category, setup=meta.setup,
                                      docs_url=meta.docs_url, checked_against=meta.checked_against)
