"""The client: one method per API call, plus ``stream()``, an async iterator over live status changes
that resumes by itself (with ``Last-Event-ID``, so no change is missed) when the stream breaks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Any, cast

import aiohttp

from hookstatus_client.errors import HookStatusError
from hookstatus_client.events import StreamEvent
from hookstatus_client.sse import SseParser
from hookstatus_client.types import (
    BrowserToken,
    Connection,
    ConnectionTest,
    CreatedConnection,
    CreatedNotificationEndpoint,
    Delivery,
    HeldDelivery,
    NotificationAttempt,
    NotificationEndpoint,
    Provider,
    ReverifyResult,
)

DEFAULT_RETRY_MS = 2000


class HookStatusClient:
    """``token`` is a service token (everything) or a browser token (one account's connections)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._own_session = session is None
        self._session = session or aiohttp.ClientSession()
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def __aenter__(self) -> HookStatusClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session:
            await self._session.close()

    def __repr__(self) -> str:  # never the token
        return f"HookStatusClient({self.base_url!r})"

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
                    params: dict[str, str] | None = None) -> Any:
        try:
            async with self._session.request(
                method, self.base_url + path, json=body, params=params, headers=self._headers,
                timeout=self._timeout,
            ) as response:
                payload = await response.read()
                if response.status >= 400:
                    raise _api_error(response.status, payload)
                return json.loads(payload) if payload else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise HookStatusError(0, "unreachable", f"the status API did not answer: {type(exc).__name__}") from exc

    # --- connections ------------------------------------------------------------------------------

    async def create_connection(
        self,
        account_id: str,
        provider: str,
        *,
        secret: str | None = None,
        settings: dict[str, Any] | None = None,
        timeout_s: int | None = None,
        expected_interval_s: int | None = None,
    ) -> CreatedConnection:
        """The answer carries ``secret`` (generated when not given): the only time it is shown."""
        body = _without_none(account_id=account_id, provider=provider, secret=secret, settings=settings,
                             timeout_s=timeout_s, expected_interval_s=expected_interval_s)
        return cast(CreatedConnection, await self._call("POST", "/v1/connections", body))

    async def get_connection(self, connection_id: str) -> Connection:
        return cast(Connection, await self._call("GET", f"/v1/connections/{connection_id}"))

    async def list_connections(self, account_id: str | None = None) -> list[Connection]:
        params = {"account_id": account_id} if account_id else None
        data = await self._call("GET", "/v1/connections", params=params)
        return cast(list[Connection], data["connections"])

    async def reconnect(
        self,
        connection_id: str,
        *,
        secret: str | None = None,
        settings: dict[str, Any] | None = None,
        timeout_s: int | None = None,
    ) -> Connection:
        body = _without_none(secret=secret, settings=settings, timeout_s=timeout_s)
        return cast(Connection, await self._call("POST", f"/v1/connections/{connection_id}/reconnect", body))

    async def disconnect(self, connection_id: str) -> Connection:
        return cast(Connection, await self._call("DELETE", f"/v1/connections/{connection_id}"))

    async def deliveries(self, connection_id: str) -> list[Delivery]:
        data = await self._call("GET", f"/v1/connections/{connection_id}/deliveries")
        return cast(list[Delivery], data["deliveries"])

    async def held(self, connection_id: str) -> list[HeldDelivery]:
        """The rejected requests held to be verified again after a fix (never a body)."""
        data = await self._call("GET", f"/v1/connections/{connection_id}/held")
        return cast(list[HeldDelivery], data["held"])

    async def reverify(self, connection_id: str) -> ReverifyResult:
        """Verify the held requests again with the connection's secret and settings as they are now."""
        return cast(ReverifyResult, await self._call("POST", f"/v1/connections/{connection_id}/reverify"))

    async def providers(self) -> list[Provider]:
        data = await self._call("GET", "/v1/providers")
        return cast(list[Provider], data["providers"])

    # --- test events ------------------------------------------------------------------------------

    async def start_test(self, connection_id: str, *, timeout_s: int | None = None) -> ConnectionTest:
        body = _without_none(timeout_s=timeout_s)
        return cast(ConnectionTest, await self._call("POST", f"/v1/connections/{connection_id}/tests", body))

    async def get_test(self, connection_id: str, test_id: str) -> ConnectionTest:
        return cast(ConnectionTest, await self._call("GET", f"/v1/connections/{connection_id}/tests/{test_id}"))

    # --- browser tokens ---------------------------------------------------------------------------

    async def create_browser_token(
        self, account_id: str, *, ttl_s: int | None = None, create_providers: list[str] | None = None,
        create_limit: int | None = None,
    ) -> BrowserToken:
        """A page token. With ``create_limit`` (and optionally ``create_providers``) the page may create up to
        that many connections (its provider picker); without, it cannot create any."""
        grant = None
        if create_limit is not None or create_providers is not None:
            grant = _without_none(providers=create_providers, limit=create_limit)
        body = _without_none(ttl_s=ttl_s, create=grant)
        return cast(BrowserToken, await self._call("POST", f"/v1/accounts/{account_id}/tokens", body))

    # --- notification endpoints (service token) ---------------------------------------------------

    async def create_notification_endpoint(
        self, url: str, *, account_id: str | None = None, events: list[str] | None = None
    ) -> CreatedNotificationEndpoint:
        """Where the product receives connection changes, signed (Standard Webhooks) with the ``secret``
        of the answer: the only time it is shown."""
        body = _without_none(url=url, account_id=account_id, events=events)
        return cast(CreatedNotificationEndpoint, await self._call("POST", "/v1/notification-endpoints", body))

    async def list_notification_endpoints(self, account_id: str | None = None) -> list[NotificationEndpoint]:
        params = {"account_id": account_id} if account_id else None
        data = await self._call("GET", "/v1/notification-endpoints", params=params)
        return cast(list[NotificationEndpoint], data["endpoints"])

    async def get_notification_endpoint(self, endpoint_id: str) -> NotificationEndpoint:
        return cast(NotificationEndpoint, await self._call("GET", f"/v1/notification-endpoints/{endpoint_id}"))

    async def delete_notification_endpoint(self, endpoint_id: str) -> None:
        await self._call("DELETE", f"/v1/notification-endpoints/{endpoint_id}")

    async def enable_notification_endpoint(self, endpoint_id: str) -> NotificationEndpoint:
        """Enable an endpoint again (the notifier disables one that keeps failing); its failure count is
        cleared."""
        return cast(NotificationEndpoint, await self._call("POST", f"/v1/notification-endpoints/{endpoint_id}/enable"))

    async def notification_attempts(self, endpoint_id: str) -> list[NotificationAttempt]:
        data = await self._call("GET", f"/v1/notification-endpoints/{endpoint_id}/attempts")
        return cast(list[NotificationAttempt], data["attempts"])

    # --- live status ------------------------------------------------------------------------------

    async def stream(
        self,
        *,
        connection_id: str | None = None,
        account_id: str | None = None,
        last_event_id: str | None = None,
        resume: bool = True,
        read_timeout_s: float = 60.0,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Every change of one connection (or of every connection of an account), as it happens.

        First the current state of every connection in scope (then a ``ready`` event), or, with
        ``last_event_id``, only what changed since. With ``resume``, a broken stream is reopened where it
        left off. ``read_timeout_s`` should exceed the server's heartbeat interval. Stops after a
        ``token_expired`` event, or when the caller stops iterating.
        """
        if (connection_id is None) == (account_id is None):
            raise ValueError("give exactly one of connection_id and account_id")
        path = (f"/v1/connections/{connection_id}/stream" if connection_id
                else f"/v1/accounts/{account_id}/stream")
        parser = SseParser(last_event_id)
        while True:
            try:
                async for event in self._stream_once(path, parser, read_timeout_s):
                    yield event
                    if event.event == "token_expired":
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                if not resume:
                    raise HookStatusError(0, "unreachable", f"the stream broke: {type(exc).__name__}") from exc
            except HookStatusError as exc:
                if not resume or exc.status < 500:  # 4xx (a bad or expired token) will not get better
                    raise
            if not resume:
                return
            await asyncio.sleep((parser.retry_ms or DEFAULT_RETRY_MS) / 1000)

    async def _stream_once(self, path: str, parser: SseParser, read_timeout_s: float) -> AsyncIterator[StreamEvent]:
        headers = {**self._headers, "Accept": "text/event-stream"}
        if parser.last_event_id:
            headers["Last-Event-ID"] = parser.last_event_id
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=read_timeout_s)
        async with self._session.get(self.base_url + path, headers=headers, timeout=timeout) as response:
            if response.status != 200:
                raise _api_error(response.status, await response.read())
            async for raw in response.content:
                event = parser.feed_line(raw.decode("utf-8").rstrip("\r\n"))
                if event is not None:
                    yield StreamEvent(event.event, event.id, json.loads(event.data))


def _api_error(status: int, payload: bytes) -> HookStatusError:
    try:
        error = json.loads(payload)["error"]
        return HookStatusError(status, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        return HookStatusError(status, "http_error", f"the status API answered {status}")


def _without_none(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}
