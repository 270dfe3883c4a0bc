"""Property-based tests on every signature parser in ``shared.providers.PROVIDERS`` (providers added
later are covered by the same tests): arbitrary headers, query strings, bodies, encodings, lengths,
settings and stored secrets.

Properties:
- ``validate_settings`` raises nothing but ``SettingsError``; ``verify`` and the receiver's
  ``verify_with_rotation`` raise nothing but ``VerificationError``, always with a 4xx status, a
  machine-readable code and a message;
- a forged request never verifies as an event: the only requests that pass without the secret are
  registration handshakes, whose reply is a 2xx.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, MultiDict

from shared.errors import SettingsError, VerificationError
from shared.providers import PROVIDERS, InboundRequest, Provider, Verified
from shared.providers.families import BasicFamily, CatalogProvider, TokenFamily
from shared.providers.rotation import verify_with_rotation
from tests.faults.ledger import write_report

NOW = 1_800_000_000.0
CODE = re.compile(r"^[a-z][a-z0-9_]*$")
FIGURES: Counter[str] = Counter()
OUTCOMES: Counter[str] = Counter()

# Fragments that real signature headers are made of, so the fuzzer walks into the parsers' branches
# (schemes, separators, versions, timestamps, base64 and hex) instead of failing at the first check.
PIECES = ["v1", "v1a", "v0", "sha256", "sha1", "sha512", "=", ",", ";", " ", "t=", "ts=", "s=", "v1=",
          "whsec_", ":", ".", "==", "%", "\t", "0", "1", str(int(NOW)), str(int(NOW) * 1000), "-1",
          "9" * 30, "AAAA", "////", "+/+/", "deadbeef", "zz", "\x00", "é", "\u202e", "sha256=abcd"]
header_value = st.one_of(
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(string.printable, max_size=12)), max_size=12).map("".join),
    st.text(max_size=64),
    st.text(string.hexdigits, min_size=0, max_size=130),
    st.text(string.ascii_letters + string.digits + "+/=", max_size=100),
)
COMMON_HEADERS = ["Content-Type", "User-Agent", "X-Event-Id", "X-Request-Id", "Authorization"]
QUERY_NAMES = ["challenge", "crc_token", "validationToken", "hub.mode", "hub.challenge", "hub.verify_token",
               "token", "signature", "timestamp", "x"]
SETTING_VALUES = ["sha256", "sha1", "sha512", "md5", "hex", "base64", "utf8", "s", "ms", "X-Sig",
                  "X-Timestamp", "X-Id", "300", "{body}", "{timestamp}.{body}", "{id}", "", " ", "sha256="]
body_strategy = st.one_of(
    st.binary(max_size=300),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    ).map(lambda v: json.dumps(v).encode()),  # json, not orjson: integers past 64 bits are fair game
    st.sampled_from([b"", b"{}", b"[]", b"null", b'{"type":"url_verification","challenge":"c"}',
                     b'{"event":"endpoint.url_validation","payload":{"plainToken":"p"}}', b"\xff\xfe"]),
)


def provider_names() -> list[str]:
    """Every adapter written in code, and of the catalog's presets one of each shape (family, where the
    signature and timestamp are read, how several values are written, the handshake's conditions):
    presets of one shape run the very same code on different names."""
    names, shapes = [], set()
    for name in sorted(PROVIDERS):
        provider = PROVIDERS[name]
        if not isinstance(provider, CatalogProvider):
            names.append(name)
            continue
        shape = _shape(provider)
        if shape not in shapes:
            shapes.add(shape)
            names.append(name)
    return names


def _shape(provider: CatalogProvider) -> tuple[object, ...]:
    entry, sig = provider.entry, provider.entry.signature
    shake = entry.handshake
    return (type(provider).__mro__[1], sig and (sig.at[0].kind, bool(sig.kv_signature), bool(sig.separator)),
            entry.timestamp and (entry.timestamp.at.kind, entry.timestamp.unit),
            shake and tuple((c.location and c.location.kind, c.absent) for c in shake.when))


@st.composite
def settings_for(draw: st.DrawFn, provider: Provider) -> dict[str, Any]:
    """A settings object: any subset of the provider's documented settings, plausible or not."""
    chosen: dict[str, Any] = {}
    for name in provider.info.settings:
        if draw(st.booleans()):
            chosen[name] = draw(st.one_of(st.sampled_from(SETTING_VALUES), st.text(max_size=20),
                                          st.integers(-5, 10**6), st.none(), st.lists(st.integers(), max_size=2)))
    if draw(st.booleans()):
        chosen[draw(st.text(max_size=10))] = draw(st.text(max_size=10))
    return chosen


@st.composite
def requests_for(draw: st.DrawFn, provider: Provider) -> InboundRequest:
    names = list(provider.info.headers) + COMMON_HEADERS
    headers: CIMultiDict[str] = CIMultiDict()
    if draw(st.booleans()):  # every header the scheme reads, so parsing goes past "missing header"
        for name in provider.info.headers:
            headers.add(name, draw(header_value))
    for name in draw(st.lists(st.one_of(st.sampled_from(names), st.text(string.ascii_letters + "-", min_size=1,
                                                                          max_size=20)), max_size=8)):
        case = draw(st.sampled_from([str.lower, str.upper, str.title, lambda s: s]))
        headers.add(case(name), draw(header_value))
    query: MultiDict[str] = MultiDict()
    for name in draw(st.lists(st.sampled_from(QUERY_NAMES), max_size=3)):
        query.add(name, draw(header_value))
    method = draw(st.sampled_from(list(provider.methods) + ["POST"]))
    url = "https://hooks.example.test/hooks/" + "a" * 32
    return InboundRequest(method, url, headers, query, draw(body_strategy))


def _secrets(provider: Provider) -> st.SearchStrategy[str]:
    generated = provider.generate_secret()
    if isinstance(provider, (TokenFamily, BasicFamily)):
        # The secret is sent as it is: a drawn header equal to a drawn secret is a genuine request, not
        # a forgery. Only secrets no drawn header can equal, and the empty one.
        return st.sampled_from([generated, "", "fuzz-token:" + secrets.token_hex(16)])
    return st.one_of(st.just(generated), st.text(min_size=1, max_size=40), st.just(""),
                     st.just("whsec_" + "A" * 43))


def check_outcome(provider: Provider, outcome: Verified | VerificationError) -> None:
    if isinstance(outcome, VerificationError):
        assert 400 <= outcome.status < 500, (provider.name, outcome.code, outcome.status)
        assert CODE.match(outcome.code), (provider.name, outcome.code)
        assert isinstance(outcome.message, str) and outcome.message.strip(), (provider.name, outcome.code)
        OUTCOMES[f"{provider.name}:{outcome.code}"] += 1
        return
    # Passed without the signing secret: only a registration handshake may do that.
    assert outcome.handshake or outcome.reply is not None, (provider.name, outcome)
    if outcome.reply is not None:
        assert 200 <= outcome.reply.status < 300 and isinstance(outcome.reply.body, bytes)
    OUTCOMES[f"{provider.name}:handshake"] += 1


def attempt(fn: Any, *args: Any, **kw: Any) -> Verified | VerificationError:
    try:
        return fn(*args, **kw)  # type: ignore[no-any-return]
    except VerificationError as exc:
        return exc


@pytest.mark.parametrize("name", provider_names())
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_verify_raises_only_verification_errors(name: str, data: st.DataObject) -> None:
    provider = PROVIDERS[name]
    raw_settings = data.draw(settings_for(provider), "settings")
    try:
        checked = provider.validate_settings(raw_settings)
    except SettingsError as exc:
        assert exc.message, name
        FIGURES["settings_refused"] += 1
        checked = {}  # only validated settings are ever stored; {} is what another scheme's diagnosis sees
    request = data.draw(requests_for(provider), "request")
    secret = data.draw(_secrets(provider), "secret")
    FIGURES["cases"] += 1
    check_outcome(provider, attempt(provider.verify, request, secret, checked, NOW))
    previous = data.draw(st.none() | _secrets(provider), "previous")
    retired = data.draw(st.none() | st.text(max_size=20), "retired")
    check_outcome(provider, attempt(verify_with_rotation, provider, request, (secret, previous), checked, NOW,
                                    retired=retired))


@pytest.mark.parametrize("name", provider_names())
@settings(max_examples=60, deadline=None)
@given(secret=st.text(max_size=80))
def test_pasted_secrets_are_accepted_or_refused_cleanly(name: str, secret: str) -> None:
    provider = PROVIDERS[name]
    FIGURES["secrets_tried"] += 1
    try:
        stored = provider.validate_secret(secret)
    except SettingsError as exc:
        assert exc.message
        return
    assert isinstance(stored, str)


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    by_code = Counter(key.split(":", 1)[1] for key in OUTCOMES.elements())
    write_report("fuzz_providers", {
        "providers": len(PROVIDERS), "cases": FIGURES["cases"], "verify_calls": FIGURES["cases"] * 2,
        "settings_refused": FIGURES["settings_refused"], "pasted_secrets_tried": FIGURES["secrets_tried"],
        "outcomes_by_code": dict(by_code.most_common()), "unexpected_exceptions": 0,
        "command": ".venv/bin/python -m pytest tests/test_fuzz_providers.py -q",
    })
