"""Intercom: ``X-Hub-Signature: sha1=<hex HMAC-SHA1(app client secret, raw body)>``.

Intercom signs with the app's client secret (Developer Hub -> Basic information). The ``ping`` topic,
sent by the Webhooks page's "Send test request", counts as a test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from shared.providers import core
from shared.providers.adapter_kit import IssuedSecretProvider
from shared.providers.base import InboundRequest, ProviderInfo, Verified
from shared.providers.events import body_fingerprint, dig, json_body

SIGNATURE = "X-Hub-Signature"
TEST_TOPIC = "ping"


class Intercom(IssuedSecretProvider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="intercom",
        title="Intercom",
        headers=(SIGNATURE,),
        scheme="'sha1=' + hex HMAC-SHA1(client secret, raw body)",
        handshake=None,
        secret_format="the app's client secret (Developer Hub -> your app -> Basic information)",
        settings={},
        test_instructions="Developer Hub -> your app -> Webhooks -> Send test request (topic 'ping').",
    )

    def verify(
        self, request: InboundRequest, secret: str, settings: Mapping[str, Any], now: float
    ) -> Verified:
        value = core.after_prefix(core.require_header(request, SIGNATURE), "sha1=", SIGNATURE)
        given = core.decode_hex(value, f"{SIGNATURE} value")
        if not core.constant_time_equal(core.hmac_digest(secret.encode(), request.body, "sha1"), given):
            raise core.mismatch("Intercom signs with the app's client secret, not an access token.")
        data = json_body(request.body)
        topic = dig(data, "topic")
        event_id = dig(data, "id")
        return Verified(
            event_id=f"intercom:{event_id}" if event_id else body_fingerprint(request.body),
            event_type=topic,
            is_test=topic == TEST_TOPIC,
        )
