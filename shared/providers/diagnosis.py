"""Why a delivery did not verify, in words a user can act on.

Called by ``rotation.verify_with_rotation`` only when verification has already failed, with the error it
failed with. It tries a bounded number of alternatives, each one an HMAC (or ed25519) check over the
body, and returns a more precise ``VerificationError`` when one explains the failure:

- ``previous_secret``   the request verifies with a secret replaced by a reconnect whose window ended;
- ``secret_format``     it verifies with the stored secret in another format (``whsec_`` added or
                        removed, a ``v1,`` prefix removed, hex <-> base64, quotes or spaces removed);
- ``wrong_provider``    it verifies under another registered provider's scheme with the same secret
                        (every provider whose headers the request carries is tried, and all that
                        verify are named: some sign exactly alike), or carries another provider's
                        signature headers and none of this one's.

Otherwise the original error stands. Cost: at most ``1 + len(variants) + len(PROVIDERS)`` checks, and
only headers are looked at for bodies over ``MAX_BODY_BYTES`` (a flood of junk stays cheap).

The receiver asks one more question, with candidates it reads from the store (bounded, same account and
provider): ``other_connection`` — ``secret_of_other_connection``, the request verifies with the secret of
another connection (the URLs of two connections were pasted the wrong way round).
No message ever contains a secret, only a description of how it differs.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from shared.errors import VerificationError
from shared.providers import core
from shared.providers.base import InboundRequest, Provider

log = logging.getLogger(__name__)

PREVIOUS_SECRET = "previous_secret"
SECRET_FORMAT = "secret_format"
WRONG_PROVIDER = "wrong_provider"
OTHER_CONNECTION = "secret_of_other_connection"
MAX_BODY_BYTES = 256 * 1024
MAX_ALIKE = 12  # other providers named when several verify a request alike
# Codes that mean "not this provider's request, or not readable as one".
_SHAPE_CODES = frozenset({core.MISSING_HEADER, core.MALFORMED_SIGNATURE, core.MALFORMED_TIMESTAMP})
# Adapters of one scheme under different names: never "wrong" for each other.
_FAMILIES = {"svix": "standard-webhooks"}
_WHSEC = "whsec_"


@dataclass(frozen=True, slots=True)
class Secrets:
    current: str = field(repr=False)
    previous: str | None = field(default=None, repr=False)  # still inside its rotation window
    retired: str | None = field(default=None, repr=False)  # replaced, window over


def diagnose(
    provider: Provider,
    request: InboundRequest,
    error: VerificationError,
    secrets: Secrets,
    settings: Mapping[str, Any],
    now: float,
    registered: Iterable[Provider],
) -> VerificationError:
    """A more precise error than ``error`` when one explains the failure, else ``error`` itself.
    ``registered``: every provider a request may be mistaken for (the registry)."""
    small = len(request.body) <= MAX_BODY_BYTES
    others = tuple(registered)
    if error.code in _SHAPE_CODES:
        return other_provider(provider, request, secrets.current, now, others, verify=small) or error
    if error.code != core.SIGNATURE_MISMATCH or not small:
        return error
    return (
        _retired(provider, request, secrets, settings, now)
        or _secret_format(provider, request, secrets.current, settings, now)
        or other_provider(provider, request, secrets.current, now, others, verify=True, by_headers=False)
        or error
    )


def _verifies(provider: Provider, request: InboundRequest, secret: str, settings: Mapping[str, Any],
              now: float) -> bool:
    try:
        provider.verify(request, secret, settings, now)
    except VerificationError:
        return False
    except Exception:  # noqa: BLE001 - a diagnosis must never turn a 401 into a 500
        log.warning("diagnosis check failed", extra={"provider": provider.name}, exc_info=True)
        return False
    return True


def _retired(provider: Provider, request: InboundRequest, secrets: Secrets, settings: Mapping[str, Any],
             now: float) -> VerificationError | None:
    retired = secrets.retired
    if not retired or retired == secrets.current or not _verifies(provider, request, retired, settings, now):
        return None
    return VerificationError(
        PREVIOUS_SECRET,
        "The request is signed with the signing secret this connection had before its last reconnect, and "
        "that secret's rotation window has ended. The sender still uses the old secret: update it in "
        f"{provider.info.title} to the new one (or reconnect with the secret {provider.info.title} uses).",
    )


def _secret_format(provider: Provider, request: InboundRequest, secret: str, settings: Mapping[str, Any],
                   now: float) -> VerificationError | None:
    for variant, how in secret_variants(secret):
        if _verifies(provider, request, variant, settings, now):
            return VerificationError(
                SECRET_FORMAT,
                f"The signature matches your signing secret {how}: the secret was pasted in a different "
                f"format than {provider.info.title} signs with. Reconnect with the secret copied exactly as "
                f"{provider.info.title} shows it{_format_hint(how)}.",
                variant=how,
            )
    return None


def _format_hint(how: str) -> str:
    if "whsec_" in how:
        return " (keep or drop the whsec_ prefix just as shown)"
    return ""


def secret_variants(secret: str) -> list[tuple[str, str]]:
    """Other spellings of ``secret`` a person may have pasted instead, each with how it differs."""
    seen = {secret}
    out: list[tuple[str, str]] = []
    for variant, how in _candidates(secret):
        if variant and variant not in seen:
            seen.add(variant)
            out.append((variant, how))
    return out


def _candidates(secret: str) -> Iterator[tuple[str, str]]:
    trimmed = secret.strip().strip("'\"").strip()
    if trimmed != secret:
        yield trimmed, "once the surrounding spaces or quotes are removed"
    if trimmed.startswith(_WHSEC):
        yield trimmed[len(_WHSEC) :], "without its whsec_ prefix"
    else:
        yield _WHSEC + trimmed, "with a whsec_ prefix"
    bare = trimmed[len(_WHSEC) :] if trimmed.startswith(_WHSEC) else trimmed
    if bare.lower().startswith("v1,"):
        bare = bare[3:]
        yield bare, "without the 'v1,' prefix (that is a signature's version tag, not part of the secret)"
        yield _WHSEC + bare, "without the 'v1,' prefix and with whsec_ (as Standard Webhooks shows it)"
    yield from _re_encoded(bare)


def _re_encoded(bare: str) -> Iterator[tuple[str, str]]:
    if len(bare) % 2 == 0 and _is_hex(bare):
        as_b64 = base64.b64encode(bytes.fromhex(bare)).decode()
        yield as_b64, "converted from hex to base64"
        yield _WHSEC + as_b64, "converted from hex to base64, with a whsec_ prefix"
    try:
        raw = base64.b64decode(bare, validate=True)
    except (binascii.Error, ValueError):
        return
    if raw:
        yield raw.hex(), "converted from base64 to hex"


def _is_hex(value: str) -> bool:
    return bool(value) and all(c in "0123456789abcdefABCDEF" for c in value)


def other_provider(
    provider: Provider,
    request: InboundRequest,
    secret: str,
    now: float,
    registered: Iterable[Provider],
    *,
    verify: bool,
    by_headers: bool = True,
) -> VerificationError | None:
    """Another registered provider this request verifies under, or (``by_headers``) looks like."""
    others = tuple(registered)
    candidates = _lookalikes(provider, request, others)
    if verify and secret:
        # After a mismatch, one reading this provider's own signature header proves nothing more: a Vonage
        # token whose body was changed still passes a check of the token alone (monday.com's).
        readable = not by_headers
        signers = [other for other in _signers(provider, request, others, candidates, skip_own=readable)
                   if _verifies(other, request, secret, {}, now)]
        if signers:
            return _wrong(provider, signers[0], verified=True, alike=signers[1:])
    if by_headers and candidates:
        other, present = candidates[0]
        return _wrong(provider, other, verified=False, present=present)
    return None


def _signers(provider: Provider, request: InboundRequest, registered: tuple[Provider, ...],
             lookalikes: list[tuple[Provider, list[str]]], *, skip_own: bool) -> list[Provider]:
    """The providers a check with this connection's secret may find, best first: the lookalikes, then
    every other provider that reads one of the request's headers, or none (a scheme under generic
    names, ``Authorization`` or ``X-Signature``, or in the body, shows itself only by verifying); with
    ``skip_own`` (the request was readable, only its signature differs), none that reads a header this
    provider reads too."""
    family = _family(provider)
    own = {h.lower() for h in provider.info.headers}
    ordered = [other for other, _ in lookalikes]
    seen = {other.name for other in ordered} | {provider.name}
    for other in (*_readers(request, registered), *_index(registered).headerless):
        if other.name in seen or _family(other) == family or request.method not in other.methods:
            continue
        if skip_own and any(h.lower() in own for h in other.info.headers):
            continue
        seen.add(other.name)
        ordered.append(other)
    return ordered


@dataclass(frozen=True, slots=True)
class _Index:
    by_header: Mapping[str, tuple[Provider, ...]]  # lower-case header name -> the providers reading it
    headerless: tuple[Provider, ...]  # providers that read no header (a body or query signature)
    position: Mapping[str, int]  # registry order


@lru_cache(maxsize=8)
def _index(registered: tuple[Provider, ...]) -> _Index:
    by_header: dict[str, list[Provider]] = {}
    for provider in registered:
        for name in provider.info.headers:
            by_header.setdefault(name.lower(), []).append(provider)
    return _Index({name: tuple(found) for name, found in by_header.items()},
                  tuple(p for p in registered if not p.info.headers),
                  {p.name: i for i, p in enumerate(registered)})


def _readers(request: InboundRequest, registered: tuple[Provider, ...]) -> list[Provider]:
    """The providers that read one of the request's headers, in registry order: looking up the few
    headers a request has is cheaper than going through every provider."""
    index = _index(registered)
    found = {p.name: p for name in request.headers for p in index.by_header.get(name.lower(), ())}
    return sorted(found.values(), key=lambda p: index.position[p.name])


def _lookalikes(provider: Provider, request: InboundRequest, registered: tuple[Provider, ...]
                ) -> list[tuple[Provider, list[str]]]:
    """Other providers whose headers (and not this provider's) the request carries, best match first."""
    own = {h.lower() for h in provider.info.headers}
    family = _family(provider)
    found: list[tuple[Provider, list[str]]] = []
    for other in _readers(request, registered):  # a lookalike's telling headers are among those it reads
        if other.name == provider.name or _family(other) == family:
            continue
        if request.method not in other.methods:
            continue
        telling = getattr(other, "distinctive_headers", other.info.headers)
        present = [h for h in telling if h.lower() not in own and h in request.headers]
        if present:
            found.append((other, present))
    found.sort(key=lambda item: -len(item[1]))
    return found


def _family(provider: Provider) -> str:
    """Providers signing the very same way (catalog presets of one scheme) are never "wrong" for each
    other: the request proves nothing about which of them sent it."""
    return getattr(provider, "scheme_family", None) or _FAMILIES.get(provider.name, provider.name)


def _wrong(provider: Provider, other: Provider, *, verified: bool, present: list[str] | None = None,
           alike: list[Provider] | None = None) -> VerificationError:
    mine, theirs = provider.info.title, other.info.title
    if verified:
        same = ""
        if alike:  # several senders sign exactly alike: the request cannot tell which of them it is
            titles = [p.info.title for p in alike[:MAX_ALIKE]]
            more = f" and {len(alike) - MAX_ALIKE} more" if len(alike) > MAX_ALIKE else ""
            same = f"; {', '.join(titles)}{more} sign the same way"
        what = f"This is a {theirs} signature (it verifies with this connection's secret{same})"
    else:
        what = f"This request carries {theirs}'s headers ({', '.join(present or [])})"
    return VerificationError(
        WRONG_PROVIDER,
        f"{what}; the connection is set up as {mine}. Create a connection with provider '{other.name}' "
        f"for it, or paste this connection's URL in {mine} instead.",
        provider=other.name,
    )


@dataclass(frozen=True, slots=True)
class Sibling:
    """Another connection of the same account and provider, as a candidate signer of a request."""

    connection_id: str
    secret: str = field(repr=False)
    settings: Mapping[str, Any] = field(default_factory=dict)


def other_connection(provider: Provider, request: InboundRequest, siblings: Iterable[Sibling], now: float
                     ) -> VerificationError | None:
    """The first of ``siblings`` whose secret signed ``request`` (the caller bounds how many: each is
    one more signature check), as a ``secret_of_other_connection`` error naming it; else None."""
    if len(request.body) > MAX_BODY_BYTES:
        return None
    title = provider.info.title
    for sibling in siblings:
        if sibling.secret and _signed_by(provider, request, sibling, now):
            return VerificationError(
                OTHER_CONNECTION,
                f"The request is signed with the signing secret of your other {title} connection "
                f"{sibling.connection_id}: the URL of one connection is pasted in the other's dashboard. Paste "
                f"each connection's own webhook URL in {title}.",
                connection_id=sibling.connection_id,
            )
    return None


def _signed_by(provider: Provider, request: InboundRequest, sibling: Sibling, now: float) -> bool:
    try:
        provider.verify(request, sibling.secret, sibling.settings, now)
    except VerificationError as exc:
        # Timestamps are judged after the signature: a timestamp error means the secret matched.
        return exc.code in core.TIMESTAMP_REASONS
    except Exception:  # noqa: BLE001 - a diagnosis must never turn a 401 into a 500
        log.warning("diagnosis check failed", extra={"provider": provider.name}, exc_info=True)
        return False
    return True
