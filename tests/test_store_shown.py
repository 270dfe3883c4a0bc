"""A connection read only to be shown (``Store.get(..., opened=False)``, what the status API's reads and
streams use) is not decrypted: no secret, no settings, only whether a previous secret is there; and the
status object made from it is the same as from a fully opened read."""

from __future__ import annotations

import base64

import redis.asyncio as aioredis

from services.status_api.presentation import connection_view
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
