"""Whatever arrives, the hubspot ... msgraph adapters answer with ``Verified`` or the project's own
``VerificationError`` (a reason code and a message), never a stray exception that would become a 500."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import VerificationError
from shared.providers import PROVIDERS
from shared.providers.base import InboundRequest, Verified

NAMES = ("hubspot", "linear", "square", "pagerduty", "calendly", "paddle", "typeform", "intercom",
         "dropbox", "twitter", "asana", "msgraph")
QUERY_KEYS = ("challenge", "crc_token", "validationToken", "nonce")
PREFIXES = ("", "sha256=", "sha1=", "v1=", "t=1,v1=", "ts=1;h1=", "t=abc,v1=zz", "ts=;h1=")

text = st.text(max_size=80)
HUGE = "9" * 400  # parses as an int, fits no float
header_value = st.one_of(
    text,
    st.sampled_from([HUGE, f"t={HUGE},v1=ab", f"ts={HUGE};h1=ab", f"-{HUGE}"]),
    st.builds(lambda p, v: p + v, st.sampled_from(PREFIXES), st.text("0123456789abcdefABCDEF+/=,;", max_size=70)),
)
bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b'{"events":[]}', b'{"events":[1]}', b'{"value":[]}', b'{"value":[{"clientState":1}]}',
                     b'[{"eventId":1}]', b'[]', b'{"webhookTimestamp":"x"}', b'{"webhookTimestamp":true}',
                     b'{"event":{"event_type":5}}', b"null"]),
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, InboundRequest]:
    name = draw(st.sampled_from(NAMES))
    provider = PROVIDERS[name]
    names = list(provider.info.headers) + ["X-Hook-Secret", "x-square-signature", "X-Other"]
    headers = draw(st.dictionaries(st.sampled_from(names), header_value, max_size=4))
    query = draw(st.dictionaries(st.sampled_from(QUERY_KEYS), text, max_size=2))
    method = draw(st.sampled_from(provider.methods))
    return name, InboundRequest(method, "http://127.0.0.1/hooks/x", headers, query, draw(bodies))


@settings(max_examples=400, deadline=None)
@given(requests(), st.sampled_from(["", "asana-pending:abc", "secret-value-123"]),
       st.floats(min_value=0, max_value=4e9))
def test_adapters_never_raise_anything_but_verification_errors(
    case: tuple[str, InboundRequest], secret: str, now: float
) -> None:
    name, request = case
    provider = PROVIDERS[name]
    settings_ = {"client_state": "state-1"} if name == "msgraph" else {}
    try:
        result = provider.verify(request, secret, settings_, now)
    except VerificationError as exc:
        assert exc.code and exc.message
        assert secret not in exc.message or not secret
        return
    assert isinstance(result, Verified)
