"""The one error the client raises: the API's ``{"error": {"code", "message"}}``, or a transport failure
(``status`` 0, ``code`` ``unreachable``)."""

from __future__ import annotations


class HookStatusError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
