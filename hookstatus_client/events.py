"""One event of a status stream (``HookStatusClient.stream``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hookstatus_client.types import Connection


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of a status stream. ``event`` is ``connection`` (``data`` is a ``Connection``),
    ``ready`` (the initial state has been sent) or ``token_expired``."""

    event: str
    id: str | None
    data: Any

    @property
    def connection(self) -> Connection:
        if self.event != "connection":
            raise ValueError(f"a {self.event!r} event carries no connection")
        return self.data  # type: ignore[no-any-return]
