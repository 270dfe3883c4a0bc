"""The project's exceptions, in one small tree.

    HookStatusError
     ├── ConfigError            bad or missing configuration; the process refuses to start
     ├── ApiError               a request cannot be served: status, code, message, headers (and detail)
     │    ├── BadRequest        400
     │    ├── Unauthorized      401
     │    ├── NotFound          404
     │    ├── Gone              410
     │    ├── PayloadTooLarge   413
     │    ├── TooManyRequests   429 (Retry-After)
     │    └── ServiceUnavailable 503 (Retry-After)
     ├── VerificationError      a webhook did not verify (carries a reason code, 401 by default)
     ├── SettingsError          a provider's settings are missing or invalid (400 at creation)
     ├── BrokerUnavailable      RabbitMQ did not confirm in time (receiver answers 503)
     ├── StoreUnavailable       Redis cannot be reached (503, or the verifier holds and retries)
     └── PoisonMessage          a delivery message that can never be processed (dead-lettered)

Third-party errors are translated where they are met (``raise X(...) from exc``). Every HTTP error
leaves a handler one way: ``raise ApiError(...)`` (or a subclass); ``shared.http.error_middleware``
renders it as ``{"error": {"code", "message", ...detail}}`` with its status and headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class HookStatusError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(HookStatusError):
    pass


class ApiError(HookStatusError):
    """An HTTP error: ``status``, a machine-readable ``code``, a ``message`` in words, response ``headers``
    (``Retry-After``, ``Allow``) and ``detail``, extra members of the error object (``delivery_id``)."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        **detail: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers: dict[str, str] = dict(headers or {})
        self.detail = detail


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Gone(ApiError):
    status = 410
    code = "gone"


class PayloadTooLarge(ApiError):
    status = 413
    code = "body_too_large"


class TooManyRequests(ApiError):
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after_s: int, code: str | None = None, **detail: Any) -> None:
        self.retry_after_s = max(1, retry_after_s)
        super().__init__(message, code=code, headers={"Retry-After": str(self.retry_after_s)}, **detail)


class ServiceUnavailable(ApiError):
    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after_s: int, code: str | None = None, **detail: Any) -> None:
        super().__init__(message, code=code, headers={"Retry-After": str(retry_after_s)}, **detail)


class VerificationError(HookStatusError):
    """A webhook that did not verify. ``code`` is machine-readable, ``message`` says what to do."""

    def __init__(self, code: str, message: str, *, status: int = 401, **detail: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.detail = detail


class SettingsError(HookStatusError):
    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class BrokerUnavailable(HookStatusError):
    pass


class StoreUnavailable(HookStatusError):
    pass


class PoisonMessage(HookStatusError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
