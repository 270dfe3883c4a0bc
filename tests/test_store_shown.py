"""A connection read only to be shown (``Store.get(..., opened=False)``, what the status API's reads and
streams use) is not decrypted: no secret, no settings, only whether a previous secret is there; and the
status object made from it is the same as from a fully opened read."""

from __future__ import annotations

import base64
from collections import OrderedDict

import orjson
import pytest
import redis.asyncio as aioredis

from services.status_api.presentation import connection_view, shown
from shared import records
from shared.crypto import Sealer
from shared.records import ConnectionRecord
from shared.store import SEALED, Store

KEY = "k1:" + base64.b64encode(b"shown-test-secrets-key-000000000").decode()


async def test_a_record_read_to_be_shown_is_not_decrypted(redis_client: aioredis.Redis, prefix: str) -> None:
    store = Store(redis_client, prefix, Sealer((KEY,)))
    record = ConnectionRecord(id="f" * 32, account_id="acct-shown", provider="standard-webhooks", state="connected",
                              reason="verified_event", webhook_url="http://x/hooks/" + "f" * 32, version=4,
                              secret="whsec_c2hvd24tc2VjcmV0", settings={"tolerance_s": 60}, created_at_ms=1)
    await store.create(record)
    key = store.keys.conn(record.id)
    # In a rotation: the previous secret still verifies (sealed too, as a reconnect stores it).
    await redis_client.hset(key, mapping={"prev_secret": store.sealer.seal("whsec_b2xkLXNlY3JldA==", record.id),
                                          "prev_secret_until": str(2**42)})
    assert (await redis_client.hget(key, "secret")).startswith("enc1:k1:")

    opened = await store.get(record.id)
    assert opened is not None and opened.secret == record.secret and opened.settings == {"tolerance_s": 60}
    shown = await store.get(record.id, opened=False)
    assert shown is not None
    assert (shown.secret, shown.settings, shown.prev_secret) == ("", {}, SEALED)
    assert connection_view(shown, now=10) == connection_view(opened, now=10)
    assert connection_view(shown, now=10)["previous_secret_active"] is True

    # A value sealed with a key the process no longer has: the full read fails, the shown one does not.
    sealed = await redis_client.hget(key, "secret")
    await redis_client.hset(key, "secret", sealed.replace("enc1:k1:", "enc1:gone:", 1))
    [listed] = await store.list_for_account("acct-shown", opened=False)
    assert listed.id == record.id and listed.secret == ""


async def test_a_hash_read_again_unchanged_is_parsed_and_shown_once(redis_client: aioredis.Redis, prefix: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A status read of a connection read lately and not changed since gives the very record it gave
    before, and its view and JSON are the ones rendered before (``presentation.shown``); any change of any
    field gives a new record and a new view. A connection read once is not kept; a read with the secret
    opened never is."""
    store = Store(redis_client, prefix, Sealer((KEY,)))
    record = ConnectionRecord(id="e" * 32, account_id="acct-kept", provider="standard-webhooks", state="pending",
                              reason="awaiting_first_event", webhook_url="http://x/hooks/" + "e" * 32, version=1,
                              secret="whsec_c2hvd24tc2VjcmV0", settings={"tolerance_s": 60}, created_at_ms=1,
                              pending_deadline_ms=2**42)
    await store.create(record)
    once = await store.get(record.id, opened=False)
    assert once is not None and not once.is_kept()
    first = await store.get(record.id, opened=False)
    assert first is not None and first.is_kept() and await store.get(record.id, opened=False) is first
    view, body = shown(first, 10)
    assert body == orjson.dumps(connection_view(first, 10)) and view["events_received"] == 0
    again = await store.get(record.id, opened=False)
    assert again is not None and shown(again, 11)[1] is body

    await redis_client.hset(store.keys.conn(record.id), "events_received", "7")
    changed = await store.get(record.id, opened=False)
    assert changed is not None and changed is not first and changed.events_received == 7
    assert shown(changed, 11)[0]["events_received"] == 7

    opened, opened_again = await store.get(record.id), await store.get(record.id)
    assert opened is not None and opened.secret == record.secret and opened_again is not opened
    plain = {"id": "d" * 32, "state": "connected", "prev_secret": "whsec_cGxhaW4="}  # an opened previous secret
    assert ConnectionRecord.from_hash(plain) is not ConnectionRecord.from_hash(plain)

    monkeypatch.setattr(records, "SHOWN_KEPT", 2)
    monkeypatch.setattr(records, "_SHOWN", OrderedDict())
    monkeypatch.setattr(records, "_READ_ONCE", OrderedDict())
    for cid in ("a" * 32, "b" * 32, "c" * 32):
        ConnectionRecord.from_hash({"id": cid, "state": "pending"})
        ConnectionRecord.from_hash({"id": cid, "state": "pending"})
    assert list(records._SHOWN) == ["b" * 32, "c" * 32]
    for cid in ("d" * 32, "e" * 32, "f" * 32):
        ConnectionRecord.from_hash({"id": cid, "state": "pending"})  # read once each: not kept
    assert list(records._SHOWN) == ["b" * 32, "c" * 32] and list(records._READ_ONCE) == ["e" * 32, "f" * 32]


def test_a_kept_view_ends_when_the_view_would_change() -> None:
    """A pending connection's kept view is used until its deadline passes, then rendered again (failed)."""
    raw = {"id": "9" * 32, "account_id": "acct-kept", "state": "pending", "pending_deadline": "5000", "version": "1"}
    ConnectionRecord.from_hash(raw)
    record = ConnectionRecord.from_hash(raw)
    view, body = shown(record, 4_999)
    assert view["display"] == "pending" and shown(record, 4_999)[1] is body
    later, later_body = shown(record, 5_000)
    assert later["display"] == "failed" and later_body == orjson.dumps(connection_view(record, 5_000))
