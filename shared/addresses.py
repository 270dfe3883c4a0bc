"""Where the notifier may send: http(s) URLs whose every address is public, unless a setting allows
loopback (local development) or private networks (an on-premises receiver).

Refusing private, loopback and link-local addresses keeps an endpoint URL from reaching the
deployment's own network (the cloud metadata address, Redis, RabbitMQ, the status API)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.errors import BadRequest

MAX_URL_LENGTH = 2048
LOCAL_NAMES = ("localhost", "localhost.localdomain")


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    allow_private: bool = False
    allow_loopback: bool = False

    def refuses(self, address: str) -> str | None:
        """Why ``address`` (an IP literal) is refused, or None when it may be reached."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return "not_an_address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_loopback:
            return None if self.allow_loopback else "loopback_address"
        if ip.is_private or ip.is_link_local or ip.is_reserved or ip.is_multicast or ip.is_unspecified:
            return None if self.allow_private else "private_address"
        return None


def literal_ip(host: str) -> str | None:
    candidate = host.strip("[]")
    try:
        ipaddress.ip_address(candidate.split("%", 1)[0])
    except ValueError:
        return None
    return candidate


def check_endpoint_url(url: object, policy: AddressPolicy) -> str:
    """The URL if it may be registered; else ``BadRequest`` with a reason code. A host name is
    resolved (and every address checked) at each delivery; a literal address is checked here too."""
    if not isinstance(url, str) or not url:
        raise BadRequest("url is required: an absolute http or https URL", code="invalid_url")
    if len(url) > MAX_URL_LENGTH:
        raise BadRequest(f"url must be at most {MAX_URL_LENGTH} characters", code="url_too_long")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BadRequest("url is not a valid URL", code="invalid_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("url must be an absolute http or https URL", code="invalid_url_scheme")
    if parts.username or parts.password:
        raise BadRequest("url must not carry credentials", code="invalid_url")
    if port == 0 or any(c.isspace() for c in url):
        raise BadRequest("url is not a valid URL", code="invalid_url")
    host = parts.hostname
    address = literal_ip(host) or ("127.0.0.1" if host.lower().rstrip(".") in LOCAL_NAMES else None)
    if address is not None:
        refused = policy.refuses(address)
        if refused:
            raise BadRequest("url points to a loopback, private or link-local address, which endpoints may not use",
                             code=refused)
    return url
