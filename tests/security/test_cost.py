"""Work is bounded before it is done: for every provider scheme, the most expensive request a stranger
can send (the largest body, the most signature entries a header may carry, a signature that fails)
costs a connection that is over its rejected-delivery budget at most ``MAX_RATIO`` times the CPU of a
valid request of the same size, measured as a ratio in the same run.

Why 5: a header may carry at most 5 signatures (``core.MAX_SIGNATURES``); the costliest scheme checks
each one in full (ed25519 ``v1a``: one SHA-512 pass over the body per entry) where a valid request needs
one, and everything else (reading the body, the parse) is the same for both. Over the budget no
diagnosis runs and nothing is published or stored, so every other scheme stays near 1x.

CPU is ``time.process_time()`` of this whole process (client, receiver and verifier run here), over
``ROUNDS`` requests of each kind; the ratios are written to ``build/security_cost.json``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
import redis.asyncio as aioredis

from shared.providers import PROVIDERS
from shared.providers.catalog import load as load_catalog
from shared.providers.core import MAX_SIGNATURES
from shared.providers.families import CatalogProvider
from tests.providers import (
    test_asana,
    test_calendly,
    test_dropbox,
    test_generic_hmac,
    test_github,
    test_hubspot,
    test_intercom,
    test_linear,
    test_meta,
    test_paddle,
    test_pagerduty,
    test_shopify,
    test_slack,
    test_square,
    test_stripe,
    test_svix,
    test_twilio,
    test_twitter,
    test_typeform,
    test_zoom,
)
from tests.providers.catalog_signer import Signer
from tests.providers.test_catalog_sdks import _contentful_headers
from tests.signing import generic_sha256_headers
from tests.system import System, start_system

ROOT = Path(__file__).resolve().parents[2]
MAX_RATIO = 5.0
ROUNDS = 6
PAD = 1_000_000  # bytes of padding: bodies just under the receiver's 1 MiB limit
CLIENT_STATE = "cost-client-state-7f3a9c"
GENERIC_SECRET = "cost-generic-secret-0123456789abcdef"
RESULTS: dict[str, dict[str, Any]] = {}

Request = tuple[bytes, dict[str, str], str]  # body, headers, query string
Build = Callable[[dict[str, Any], bytes], Request]


def json_body(n: int, **fields: Any) -> bytes:
    """A JSON event of about 1 MB; ``n`` makes each one distinct (so none is a duplicate)."""
    return orjson.dumps({**fields, "n": n, "pad": "a" * PAD})


def tampered(body: bytes) -> bytes:
    """The same size, one byte changed in the padding: every signature over it fails."""
    at = len(body) - 10
    return body[:at] + (b"b" if body[at:at + 1] != b"b" else b"c") + body[at + 1:]


def rand_hex(size: int = 32) -> str:
    return os.urandom(size).hex()


HEADER_ROOM = 8000  # what fits in one header line (aiohttp refuses longer ones)


def many(prefix: str, make: Callable[[], str], sep: str, flood: bool = False) -> str:
    """The most signature entries a header may carry, or (``flood``) as many as fit in a header line."""
    if not flood:
        return sep.join(prefix + make() for _ in range(MAX_SIGNATURES))
    entry = prefix + make()
    return sep.join(prefix + make() for _ in range(HEADER_ROOM // (len(entry) + len(sep))))


def ed25519_shaped() -> str:
    """64 random bytes whose S half is below the group order, so a verifier must hash the whole message
    before it can refuse the signature (a random S is refused at once)."""
    return base64.b64encode(os.urandom(32) + os.urandom(31) + b"\x00").decode()


def json_event(**fields: Any) -> Callable[[int], bytes]:
    return lambda n: json_body(n, **fields)


def hmac_case(sign: Callable[[bytes], dict[str, str]]) -> Build:
    return lambda conn, body: (body, sign(body), "")


def twilio_body(n: int) -> bytes:
    return urlencode({**test_twilio.SMS, "MessageSid": f"SM{n}", "Body": "a" * PAD}).encode()


def twilio_sign(conn: dict[str, Any], body: bytes) -> Request:
    params = dict(pair.split("=", 1) for pair in body.decode().split("&"))
    from urllib.parse import unquote_plus

    params = {k: unquote_plus(v) for k, v in params.items()}
    return body, test_twilio.signed(conn["webhook_url"], params), ""


PRIVATE, PUBLIC, _ = test_svix.key_pair()


def v1a(conn: dict[str, Any], body: bytes) -> Request:
    return body, test_svix.v1a_headers(PRIVATE, body), ""


def v1a_attack(flood: bool) -> Build:
    def attack(conn: dict[str, Any], body: bytes) -> Request:
        headers = test_svix.v1a_headers(PRIVATE, body)
        headers["webhook-signature"] = many("v1a,", ed25519_shaped, " ", flood)
        return tampered(body), headers, ""
    return attack


def replace_header(build: Build, header: str, value: Callable[[dict[str, str]], str]) -> Build:
    """The valid request's headers for a tampered body, with ``header`` carrying the most signatures."""
    def attack(conn: dict[str, Any], body: bytes) -> Request:
        _, headers, query = build(conn, body)
        return tampered(body), {**headers, header: value(headers)}, query
    return attack


def first_part(headers: dict[str, str], name: str, sep: str) -> str:
    return headers[name].split(sep)[0]


# provider: (create fields, body of request n, valid request, attack request or None for "tampered")
CASES: dict[str, tuple[dict[str, Any], Callable[[int], bytes], Build, Build | None]] = {
    "standard-webhooks": ({"secret": PUBLIC}, json_event(type="invoice.paid"), v1a, None),
    "svix": ({"secret": PUBLIC}, json_event(type="invoice.paid"), v1a, None),
    "stripe": ({"secret": test_stripe.SECRET}, json_event(id="evt_1", type="charge.succeeded"),
               hmac_case(test_stripe.signed), None),
    "github": ({"secret": test_github.SECRET}, json_event(ref="refs/heads/main"),
               hmac_case(lambda b: test_github.headers(b)), None),
    "slack": ({"secret": test_slack.SECRET}, json_event(type="event_callback"), hmac_case(test_slack.signed), None),
    "shopify": ({"secret": test_shopify.SECRET}, json_event(id=1), hmac_case(test_shopify.signed), None),
    "twilio": ({"secret": test_twilio.AUTH_TOKEN}, twilio_body, twilio_sign, None),
    "zoom": ({"secret": test_zoom.SECRET}, json_event(event="meeting.started"), hmac_case(test_zoom.signed), None),
    "meta": ({"secret": test_meta.APP_SECRET, "settings": test_meta.VERIFY}, json_event(object="page"),
             hmac_case(test_meta.signed), None),
    "generic-hmac": ({"secret": test_generic_hmac.SECRET, "settings": test_generic_hmac.SETTINGS},
                     json_event(type="order.created"),
                     lambda conn, body: (body, test_generic_hmac.signed(conn, body), ""), None),
    "generic-hmac-sha256": ({"secret": GENERIC_SECRET}, json_event(type="order.created"),
                            hmac_case(lambda b: generic_sha256_headers(GENERIC_SECRET, b)), None),
    "hubspot": ({"secret": test_hubspot.SECRET}, lambda n: orjson.dumps([{"eventId": n, "pad": "a" * PAD}]),
                lambda conn, body: (body, test_hubspot.signed(conn["webhook_url"], body), ""), None),
    "linear": ({"secret": test_linear.SECRET},
               lambda n: json_body(n, type="Comment", action="create", webhookTimestamp=int(time.time() * 1000)),
               hmac_case(test_linear.signed), None),
    "square": ({"secret": test_square.KEY}, json_event(event_id="e1", type="payment.created"),
               lambda conn, body: (body, test_square.signed(conn["webhook_url"], body), ""), None),
    "pagerduty": ({"secret": test_pagerduty.SECRET}, json_event(event={"id": "e1"}),
                  hmac_case(test_pagerduty.signed), None),
    "calendly": ({"secret": test_calendly.KEY}, json_event(event="invitee.created"),
                 hmac_case(test_calendly.signed), None),
    "paddle": ({"secret": test_paddle.KEY}, json_event(event_id="evt_1"), hmac_case(test_paddle.signed), None),
    "typeform": ({"secret": test_typeform.SECRET}, json_event(event_id="e1"), hmac_case(test_typeform.signed), None),
    "intercom": ({"secret": test_intercom.CLIENT_SECRET}, json_event(id="n1", topic="ping"),
                 hmac_case(test_intercom.signed), None),
    "dropbox": ({"secret": test_dropbox.APP_SECRET}, json_event(list_folder={}), hmac_case(test_dropbox.signed), None),
    "twitter": ({"secret": test_twitter.CONSUMER_SECRET}, json_event(tweet_create_events=[]),
                hmac_case(test_twitter.signed), None),
    "asana": ({"secret": test_asana.HOOK_SECRET}, lambda n: json_body(n, events=[{"action": "changed"}]),
              hmac_case(test_asana.signed), None),
    "msgraph": ({"settings": {"client_state": CLIENT_STATE}},
                lambda n: orjson.dumps({"value": [{"clientState": CLIENT_STATE, "changeType": "created", "n": n,
                                                   "pad": "a" * PAD}]}),
                lambda conn, body: (body, {"content-type": "application/json"}, ""),
                lambda conn, body: (body.replace(CLIENT_STATE.encode(), b"x" * len(CLIENT_STATE)),
                                    {"content-type": "application/json"}, "")),
}
CATALOG = {e.id: e for e in load_catalog("").entries}


def catalog_case(name: str) -> tuple[dict[str, Any], Callable[[int], bytes], Build, Build]:
    """A catalog preset: signed as its entry describes; the forgery is signed with another secret over
    the tampered body (token and Basic presets sign no body: another secret is their forgery)."""
    signer, other = Signer(CATALOG[name]), Signer(CATALOG[name])

    def build(by: Signer, tamper: bool) -> Build:
        def make(conn: dict[str, Any], body: bytes) -> Request:
            data = orjson.loads(tampered(body) if tamper else body)
            req = signer.with_url(conn["webhook_url"]).request(data, signed_with=by.with_url(conn["webhook_url"]))
            return req.body, req.headers, req.query
        return make
    return {"secret": signer.conn_secret}, json_event(type=2, id="evt_1"), build(signer, False), build(other, True)


def braintree_case() -> tuple[dict[str, Any], Callable[[int], bytes], Build, Build]:
    """bt_payload (base64 XML) signed as Braintree's docs describe: 'public_key|' + hex HMAC-SHA1 keyed
    with the SHA-1 of the private key."""
    public, private = "cost_public", "cost_private_key_0123456789"

    def payload(n: int) -> bytes:
        xml = f"<notification><kind>check</kind><n>{n}</n><pad>{'a' * (PAD * 2 // 3)}</pad></notification>"
        return base64.encodebytes(xml.encode())

    def form(body: bytes, signed_over: bytes) -> Request:
        key = hashlib.sha1(private.encode()).digest()
        signature = f"{public}|" + hmac.new(key, signed_over, hashlib.sha1).hexdigest()
        return urlencode({"bt_signature": signature, "bt_payload": body}).encode(), \
            {"Content-Type": "application/x-www-form-urlencoded"}, ""
    return ({"secret": f"{public}:{private}"}, payload, lambda conn, body: form(body, body),
            lambda conn, body: form(tampered(body), body))


def adyen_case() -> tuple[dict[str, Any], Callable[[int], bytes], Build, Build]:
    key = os.urandom(32).hex()

    def body_of(n: int) -> bytes:
        item = {"amount": {"currency": "EUR", "value": 100}, "eventCode": "AUTHORISATION",
                "merchantAccountCode": "Cost", "merchantReference": f"ref-{n}", "originalReference": "",
                "pspReference": f"PSP{n}", "success": "true", "additionalData": {}}
        signed = "PSP{n}::Cost:ref-{n}:100:EUR:AUTHORISATION:true".replace("{n}", str(n))
        item["additionalData"] = {"hmacSignature": base64.b64encode(
            hmac.new(bytes.fromhex(key), signed.encode(), hashlib.sha256).digest()).decode()}
        return orjson.dumps({"live": "false", "notificationItems": [{"NotificationRequestItem": item}],
                             "pad": "a" * PAD})
    def forged(conn: dict[str, Any], body: bytes) -> Request:
        data = orjson.loads(body)
        item = data["notificationItems"][0]["NotificationRequestItem"]
        item["additionalData"]["hmacSignature"] = base64.b64encode(os.urandom(32)).decode()
        return orjson.dumps(data), {"Content-Type": "application/json"}, ""
    return {"secret": key}, body_of, hmac_case(lambda b: {"Content-Type": "application/json"}), forged


def contentful_case() -> tuple[dict[str, Any], Callable[[int], bytes], Build, Build | None]:
    secret = "c" * 64
    return ({"secret": secret}, json_event(sys={"id": "entry-1"}),
            lambda conn, body: (body, _contentful_headers(secret, conn["webhook_url"], body), ""), None)


# One preset per family (the others of a family differ in data only, not in the work done), and the
# catalog's schemes written in code.
CASES.update({name: catalog_case(name) for name in (
    "razorpay", "circleci", "discord", "sendgrid", "vonage", "gitlab", "postmark", "clerk")})
CASES.update({"braintree": braintree_case(), "adyen": adyen_case(), "contentful": contentful_case()})


def scheme_of(name: str) -> type:
    """What does the work for a provider: its adapter class, or for a catalog preset its family's."""
    cls = type(PROVIDERS[name])
    return cls.__mro__[1] if issubclass(cls, CatalogProvider) else cls


# The schemes whose header may carry several signatures: the attack carries the most allowed.
MULTI: dict[str, tuple[str, Callable[[dict[str, str], bool], str]]] = {
    "stripe": ("Stripe-Signature", lambda h, flood: first_part(h, "Stripe-Signature", ",") + ","
               + many("v1=", rand_hex, ",", flood)),
    "pagerduty": ("X-PagerDuty-Signature", lambda h, flood: many("v1=", rand_hex, ",", flood)),
    "paddle": ("Paddle-Signature", lambda h, flood: first_part(h, "Paddle-Signature", ";") + ";"
               + many("h1=", rand_hex, ";", flood)),
    "calendly": ("Calendly-Webhook-Signature", lambda h, flood: first_part(h, "Calendly-Webhook-Signature", ",")
                 + "," + many("v1=", rand_hex, ",", flood)),
    "circleci": ("circleci-signature", lambda h, flood: many("v1=", rand_hex, ",", flood)),
}


def attacks_of(name: str) -> dict[str, Build]:
    """The costliest forgeries of a scheme: a failing signature over the largest body, and for schemes
    whose header may carry several signatures, the most allowed and as many as fit in the header."""
    _, _, valid, attack = CASES[name]
    if attack is not None:
        return {"forged": attack}
    if name in ("standard-webhooks", "svix"):
        return {"most signatures": v1a_attack(False), "signature flood": v1a_attack(True)}
    if name in MULTI:
        header, value = MULTI[name]
        return {"most signatures": replace_header(valid, header, lambda h: value(h, False)),
                "signature flood": replace_header(valid, header, lambda h: value(h, True))}

    def tamper(conn: dict[str, Any], body: bytes) -> Request:
        _, headers, query = valid(conn, body)
        return tampered(body), headers, query
    return {"forged": tamper}


@pytest.fixture
async def budgeted(
    amqp_url: str, redis_url: str, prefix: str, redis_client: aioredis.Redis, amqp_cleanup: None,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[System]:
    """A small rejected-delivery budget that does not refill during the test."""
    monkeypatch.setenv("REJECTED_BURST", "2")
    monkeypatch.setenv("REJECTED_PER_S", "0.001")
    async with start_system(amqp_url, redis_url, prefix) as running:
        yield running


async def send(system: System, conn: dict[str, Any], request: Request) -> int:
    body, headers, query = request
    url = conn["webhook_url"] + (f"?{query}" if query else "")
    async with system.session.post(url, data=body, headers=headers) as resp:
        await resp.read()
        return resp.status


async def cpu_of(system: System, conn: dict[str, Any], request: Request, expected: tuple[int, ...]) -> float:
    started = time.process_time()
    status = await send(system, conn, request)
    spent = time.process_time() - started
    assert status in expected, status
    return spent


REFUSED = (429, 400, 401)  # over the budget: 429; a header refused before any work: 4xx
ACCEPTED = (202, 200)  # Adyen is answered "[accepted]" with 200


async def measure(system: System, name: str) -> dict[str, float]:
    fields, body_of, valid, _ = CASES[name]
    conn = await system.create(name, **fields)
    # Over the budget: forgeries until the receiver answers 429.
    for _ in range(10):
        if await send(system, conn, (b"{}", {}, "")) == 429:
            break
    else:
        raise AssertionError("the rejected-delivery budget was never exhausted")
    attacks = attacks_of(name)
    for attack in attacks.values():  # warm-up
        await cpu_of(system, conn, attack(conn, body_of(0)), REFUSED)
    await cpu_of(system, conn, valid(conn, body_of(1)), ACCEPTED)
    valid_s, attack_s = 0.0, dict.fromkeys(attacks, 0.0)
    for round_ in range(ROUNDS):  # alternating, so drift in the machine's load hits all alike
        valid_s += await cpu_of(system, conn, valid(conn, body_of(10 + round_)), ACCEPTED)
        for kind, attack in attacks.items():
            attack_s[kind] += await cpu_of(system, conn, attack(conn, body_of(100 + round_)), REFUSED)
    await system.wait_for(conn["id"], lambda v: v["state"] == "connected", timeout_s=30)
    kind, worst = max(attack_s.items(), key=lambda item: item[1])
    return {"valid_ms": valid_s / ROUNDS * 1000, "attack_ms": worst / ROUNDS * 1000, "ratio": worst / valid_s,
            "costliest": kind, **{f"{k}_ratio": v / valid_s for k, v in attack_s.items()}}


def test_every_scheme_has_a_cost_case() -> None:
    assert set(CASES) <= set(PROVIDERS)
    measured = {scheme_of(name) for name in CASES}
    assert {name for name in PROVIDERS if scheme_of(name) not in measured} == set()


async def test_the_costliest_request_of_every_scheme_is_bounded(budgeted: System) -> None:
    for name in sorted(CASES):
        RESULTS[name] = await measure(budgeted, name)
        await asyncio.sleep(0)
    report = {"max_ratio": MAX_RATIO, "rounds": ROUNDS, "body_bytes": PAD, "schemes": RESULTS}
    out = ROOT / "build" / "security_cost.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=True))
    print("\nCPU per request over the rejected budget (attack) vs a valid request, same size:")
    for name, figures in sorted(RESULTS.items(), key=lambda item: -item[1]["ratio"]):
        print(f"  {name:22} attack {figures['attack_ms']:7.2f} ms  valid {figures['valid_ms']:7.2f} ms  "
              f"ratio {figures['ratio']:.2f}  ({figures['costliest']})")
    worst = max(RESULTS.items(), key=lambda item: item[1]["ratio"])
    assert worst[1]["ratio"] <= MAX_RATIO, worst


async def test_too_many_signatures_or_too_long_a_header_is_refused_before_any_check(system: System) -> None:
    conn = await system.create("standard-webhooks", secret=PUBLIC)
    body = json_body(1, type="invoice.paid")
    _, headers, _ = v1a(conn, body)
    six = " ".join(["v1a," + ed25519_shaped()] * (MAX_SIGNATURES + 1))
    status, reply = await system.post_hook(conn["webhook_url"], body, {**headers, "webhook-signature": six})
    assert status == 401 and reply["error"]["code"] == "too_many_signatures", reply
    stripe = await system.create("stripe", secret=test_stripe.SECRET)
    _, headers, _ = hmac_case(test_stripe.signed)(stripe, body)
    long = headers["Stripe-Signature"] + ",x=" + "a" * 3000
    status, reply = await system.post_hook(stripe["webhook_url"], body, {**headers, "Stripe-Signature": long})
    assert status == 401 and reply["error"]["code"] == "header_too_long", reply
    # The sender's own header, with one signature (or two while rotating), is untouched by the limits.
    status, reply = await system.post_hook(conn["webhook_url"], body, v1a(conn, body)[1])
    assert status == 202, reply
