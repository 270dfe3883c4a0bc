"""GitHub through the running receiver, checked against the example GitHub's docs publish
("Validating webhook deliveries": secret "It's a Secret to Everybody", payload "Hello, World!")."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from shared.errors import VerificationError
from shared.providers.base import InboundRequest
from shared.providers.github import GitHub
from tests.providers.flow import accepted, connection, hmac_sha
from tests.providers.kit import expect_rejections
from tests.system import System

DOC_SECRET = "It's a Secret to Everybody"
DOC_PAYLOAD = b"Hello, World!"
DOC_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
SECRET = "gh-webhook-secret-0123456789"
PUSH = orjson.dumps({"ref": "refs/heads/main", "after": "1c2d", "repository": {"full_name": "o/r"}})
PING = orjson.dumps({"zen": "Keep it logically awesome.", "hook_id": 42, "hook": {"type": "Repository"}})


def headers(body: bytes, event: str = "push", secret: str = SECRET, delivery: str | None = None) -> dict[str, str]:
    return {
        "X-Hub-Signature-256": "sha256=" + hmac_sha(secret, body).hex(),
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "content-type": "application/json",
    }


def test_documented_example_verifies() -> None:
    request = InboundRequest("POST", "u", {"X-Hub-Signature-256": DOC_SIGNATURE}, {}, DOC_PAYLOAD)
    GitHub().verify(request, DOC_SECRET, {}, 0)
    with pytest.raises(VerificationError) as caught:
        GitHub().verify(request, DOC_SECRET + "!", {}, 0)
    assert caught.value.code == "signature_mismatch"


async def test_documented_example_through_the_receiver(system: System) -> None:
    conn = await connection(system, "github", secret=DOC_SECRET)
    delivery = await accepted(system, conn, DOC_PAYLOAD, {"X-Hub-Signature-256": DOC_SIGNATURE,
                                                          "X-GitHub-Event": "push"})
    assert delivery["event_type"] == "push"


async def test_ping_on_hook_creation_connects_and_is_a_test(system: System) -> None:
    conn = await connection(system, "github")  # GitHub lets you choose the secret: we generate one
    delivery_id = str(uuid.uuid4())
    delivery = await accepted(system, conn, PING, headers(PING, "ping", conn["secret"], delivery_id))
    assert delivery["is_test"] is True
    assert delivery["event_type"] == "ping"
    assert delivery["event_id"] == f"github:{delivery_id}"


async def test_push_connects(system: System) -> None:
    conn = await connection(system, "github", secret=SECRET)
    delivery = await accepted(system, conn, PUSH, headers(PUSH))
    assert delivery["event_type"] == "push" and delivery["is_test"] is False


async def test_tampered_and_wrong_secret_are_refused(system: System) -> None:
    def tampered(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return PUSH.replace(b"main", b"evil"), headers(PUSH)

    def other_secret(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return PUSH, headers(PUSH, secret="another-secret-0123456789")

    def unsigned(conn: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        return PUSH, {"X-GitHub-Event": "push", "content-type": "application/json"}

    await expect_rejections(
        system, "github",
        [(tampered, "signature_mismatch"), (other_secret, "signature_mismatch"), (unsigned, "missing_header")],
        secret=SECRET,
    )
