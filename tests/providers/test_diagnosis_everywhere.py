"""The diagnosis of rejected deliveries for every provider, through the running receiver.

- Catalog presets of a family get theirs in test_catalog.py (a missing signature, an unreadable one,
  another secret, a stale timestamp where one is signed). Here the same for every provider whose scheme is
  code (``tests/providers/code_signer.py`` signs for them).
- Wrong provider, for the whole catalog: each provider's genuine request, signed with the secret a
  connection of *another* provider holds (the user picked the wrong provider), is refused as
  ``wrong_provider`` with a message that names the provider that really signed it. The connection it is
  sent to changes from one provider to the next, so the diagnosis is run from many providers' side too.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import SettingsError, VerificationError
from shared.providers import PROVIDERS
from shared.providers.base import InboundRequest
from shared.providers.catalog import load
from shared.providers.diagnosis import _family
from tests.providers.catalog_signer import Signer
from tests.providers.code_signer import SHAPES, CodeSigner, with_malformed_signature, without_signature
from tests.providers.flow import accepted, connected, connection, deliver, rejected
from tests.providers.test_catalog import CODED, GENERIC
from tests.system import System

ENTRIES = {e.id: e for e in load("").entries}
IN_CODE = sorted(name for name in PROVIDERS if name not in ENTRIES or name in CODED)
# Providers no request can be recognised as, and why (said in docs/TROUBLESHOOTING.md too).
UNRECOGNISABLE = {
    "generic-hmac": "its header, algorithm and signed template are whatever the connection's settings say",
    "msgraph": "Microsoft Graph signs nothing and sends no header of its own",
}


def test_every_provider_has_the_diagnosis_tests() -> None:
    assert set(GENERIC) | set(IN_CODE) == set(PROVIDERS)
    assert set(IN_CODE) <= set(SHAPES), sorted(set(IN_CODE) - set(SHAPES))
    assert set(UNRECOGNISABLE) <= set(PROVIDERS)


@pytest.mark.parametrize("provider", IN_CODE)
async def test_a_provider_in_code_says_why_a_request_is_refused(system: System, provider: str) -> None:
    signer = CodeSigner(provider)

    async def fresh() -> dict[str, Any]:
        conn = await connection(system, provider, secret=signer.conn_secret, settings=signer.settings)
        signer.with_url(conn["webhook_url"])
        return conn

    conn = await fresh()
    genuine = signer.request()
    if provider == "adyen":  # Adyen wants "[accepted]" with a 200 to every notification
        assert await deliver(system, conn, genuine.body, genuine.headers) == (200, b"[accepted]")
        await connected(system, conn)
    else:
        await accepted(system, conn, genuine.body, genuine.headers)

    cases = [("another secret", lambda: signer.request(signed_with=CodeSigner.other(provider)), "signature_mismatch"),
             # Graph signs nothing: a notification without the clientState simply does not match
             ("no signature", lambda: without_signature(signer, signer.request()),
              "signature_mismatch" if provider == "msgraph" else "missing_header")]
    if with_malformed_signature(signer, signer.request()) is not None:
        cases.append(("unreadable signature", lambda: with_malformed_signature(signer, signer.request()),
                      "malformed_signature"))
    if signer.timed:
        cases.append(("stale", lambda: signer.request(skew_s=-4000), "timestamp_too_old"))
    for case, build, code in cases:
        conn = await fresh()
        req = build()
        assert req is not None
        reply = await rejected(system, conn, req.body, req.headers, code)
        if code == "missing_header":
            assert signer.signature_header.lower() in reply["error"]["message"].lower(), case
        if code == "timestamp_too_old":
            assert "s old" in reply["error"]["message"], case


def sender(provider: str) -> Signer | CodeSigner:
    return CodeSigner(provider) if provider in IN_CODE else Signer(ENTRIES[provider])


def configured_for(provider: str, secret: str) -> str:
    """A provider to set the connection up as, by mistake: the next catalog preset after ``provider``
    (cyclically) that signs another way, takes this secret, and does not accept the request itself."""
    names = sorted(ENTRIES)
    start = names.index(provider) + 1 if provider in names else 0
    probe = sender(provider).request()
    request = InboundRequest(probe.method, "http://127.0.0.1/hooks/x", probe.headers, {}, probe.body)
    for name in names[start:] + names[:start]:
        entry = ENTRIES[name]
        candidate = PROVIDERS[name]
        if name in CODED or entry.family != "hmac" or entry.handshake is not None or entry.signature is None:
            continue
        if entry.signature.key != "utf8" or _family(candidate) == _family(PROVIDERS[provider]):
            continue
        try:
            candidate.validate_secret(secret)
            candidate.verify(request, secret, {}, 0)
        except SettingsError:
            continue
        except VerificationError:
            return name
    raise AssertionError(f"no other provider to configure for {provider}")


@pytest.mark.parametrize("provider", sorted(set(PROVIDERS) - set(UNRECOGNISABLE)))
async def test_another_providers_request_is_named(system: System, provider: str) -> None:
    signer = sender(provider)
    target = configured_for(provider, signer.conn_secret)
    conn = await connection(system, target, secret=signer.conn_secret)
    req = signer.with_url(conn["webhook_url"]).request()
    reply = await rejected(system, conn, req.body, req.headers, "wrong_provider", method=req.method, query=req.query)
    message = reply["error"]["message"]
    assert PROVIDERS[provider].info.title in message, message
    assert f"set up as {PROVIDERS[target].info.title}" in message
    assert signer.conn_secret not in message
