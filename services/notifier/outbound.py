"""POSTing to an endpoint: every address the host resolves to is checked before connecting (the
connection then uses exactly those addresses), redirects are not followed, and one timeout bounds the
whole call. aiohttp errors leave as an ``Outcome`` with a bounded error code."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from shared.addresses import AddressPolicy, literal_ip

RESPONSE_BYTES_READ = 4096


class RefusedAddress(OSError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's threaded resolver, and refuses a host with any forbidden address."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            refused = self._policy.refuses(result["host"])
            if refused:
                raise RefusedAddress(refused)
        return results

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True, slots=True)
class Outcome:
    delivered: bool
    status: int | None = None  # the endpoint's HTTP status, when it answered
    error: str | None = None  # why it failed: http_<status>, timeout, refused address, connection error

    @property
    def label(self) -> str:
        """For the attempts counter: a bounded set of values."""
        if self.delivered:
            return "delivered"
        if self.status is not None:
            return "http_error"
        return self.error if self.error in ("timeout", "loopback_address", "private_address") else "connection_error"


class Sender:
    def __init__(self, policy: AddressPolicy, timeout_s: float) -> None:
        self._policy = policy
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self._policy), limit=100)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        host = urlsplit(url).hostname or ""
        address = literal_ip(host)
        refused = self._policy.refuses(address) if address else None
        if refused:  # aiohttp does not ask the resolver about a literal address
            return Outcome(False, error=refused)
        try:
            async with self._client().post(url, data=body, headers=headers, allow_redirects=False) as resp:
                await resp.content.read(RESPONSE_BYTES_READ)
                ok = 200 <= resp.status < 300
                return Outcome(ok, resp.status, None if ok else f"http_{resp.status}")
        except TimeoutError:
            return Outcome(False, error="timeout")
        except aiohttp.ClientConnectorError as exc:
            return Outcome(False, error=_refusal(exc) or "connection_error")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return Outcome(False, error=_refusal(exc) or f"connection_error: {type(exc).__name__}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _refusal(exc: Any) -> str | None:
    for candidate in (exc, getattr(exc, "os_error", None), exc.__cause__, exc.__context__):
        if isinstance(candidate, RefusedAddress):
            return candidate.reason
    return None
