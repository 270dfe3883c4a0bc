"""Every Redis key and channel name, in one place.

One connection's keys share a hash tag (``{<connection id>}``) so they live in one Redis Cluster slot
and every Lua script touches one slot only. The pending index and the account sets are separate keys
(their own slots) that are only ever written by single commands, never inside a script.
"""

from __future__ import annotations

from dataclasses import dataclass


def quiet_changes(changes: str) -> str:
    """The quiet changes channel that goes with the changes channel ``changes`` (``Keys.changes_quiet``)."""
    return f"{changes}:quiet"


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def conn(self, cid: str) -> str:
        return f"{self.prefix}:{{{cid}}}:conn"

    def deliveries(self, cid: str) -> str:
        return f"{self.prefix}:{{{cid}}}:deliveries"

    def seen_delivery(self, cid: str, delivery_id: str) -> str:
        return f"{self.prefix}:{{{cid}}}:seen:d:{delivery_id}"

    def seen_event(self, cid: str, event_id: str) -> str:
        return f"{self.prefix}:{{{cid}}}:seen:e:{event_id}"

    def tests(self, cid: str) -> str:
        """Hash: test id -> JSON record of that connection's earlier (replaced) test windows."""
        return f"{self.prefix}:{{{cid}}}:tests"

    def test_rate(self, cid: str) -> str:
        """Counter: test windows opened on one connection in the current minute (expires with it)."""
        return f"{self.prefix}:{{{cid}}}:tests_rate"

    def reverify_rate(self, cid: str) -> str:
        """Counter: re-verifications of one connection's held requests in the current minute."""
        return f"{self.prefix}:{{{cid}}}:reverify_rate"

    def reject_bucket(self, cid: str) -> str:
        """Hash: the token bucket that limits rejected deliveries of one connection."""
        return f"{self.prefix}:{{{cid}}}:rejected_bucket"

    def outbox(self, cid: str) -> str:
        """List: the connection's notifications (JSON) not yet relayed to RabbitMQ, oldest first."""
        return f"{self.prefix}:{{{cid}}}:outbox"

    def handshake_bucket(self, cid: str) -> str:
        """Hash: the token bucket that limits the handshakes one connection answers."""
        return f"{self.prefix}:{{{cid}}}:handshake_bucket"

    def held(self, cid: str) -> str:
        """Sorted set: ids of the connection's held (rejected, kept to verify again) requests, by receipt (ms)."""
        return f"{self.prefix}:{{{cid}}}:held"

    def held_data(self, cid: str) -> str:
        """Hash: held request id -> the request (method, query, headers, body), sealed (shared/crypto.py)."""
        return f"{self.prefix}:{{{cid}}}:held:data"

    def held_meta(self, cid: str) -> str:
        """Hash: held request id -> what may be shown of it (JSON: received_at, reason, size; never a body)."""
        return f"{self.prefix}:{{{cid}}}:held:meta"

    def account(self, account_id: str) -> str:
        return f"{self.prefix}:acct:{{{account_id}}}:conns"

    def token_creates(self, token_id: str) -> str:
        """Counter: connections one browser token created (expires with the token)."""
        return f"{self.prefix}:tok:{{{token_id}}}:creates"

    def token_created(self, token_id: str) -> str:
        """Set: the connections one browser token created (expires with the token)."""
        return f"{self.prefix}:tok:{{{token_id}}}:created"

    @property
    def pending(self) -> str:
        """Sorted set: connection id scored by its pending deadline (ms)."""
        return f"{self.prefix}:pending"

    @property
    def conn_pattern(self) -> str:
        """SCAN pattern for every connection hash (operator tools only; never on a hot path)."""
        return f"{self.prefix}:{{*}}:conn"

    @property
    def state_counts(self) -> str:
        """Hash: state -> number of connections in it (kept by every transition; read by the gauges)."""
        return f"{self.prefix}:state_counts"

    @property
    def tests_due(self) -> str:
        """Sorted set: ``<connection id>:<test id>`` scored by the test window's end (ms)."""
        return f"{self.prefix}:tests:due"

    @property
    def outbox_index(self) -> str:
        """Sorted set: connection id (with notifications to relay) scored by when to look at it (ms)."""
        return f"{self.prefix}:outbox"

    @property
    def disconnected(self) -> str:
        """Sorted set: disconnected connection id scored by when it is purged (ms; the retention's end)."""
        return f"{self.prefix}:disconnected"

    def connection_pattern(self, cid: str) -> str:
        """SCAN pattern for every key of one connection (they share its hash tag): purge only."""
        return f"{self.prefix}:{{{cid}}}:*"

    @property
    def silence_index(self) -> str:
        """Sorted set: connected connection id (with an expected interval) scored by when it turns silent (ms)."""
        return f"{self.prefix}:silence"

    @property
    def held_index(self) -> str:
        """Sorted set: every held request as ``<cid>:<held id>:<size>``, by receipt (ms): the total bound."""
        return f"{self.prefix}:held"

    @property
    def held_bytes(self) -> str:
        """Counter: the bytes of every request in ``held_index`` (the total bound)."""
        return f"{self.prefix}:held:bytes"

    @property
    def changes(self) -> str:
        """Pub/sub channel: one message per stored change of any connection."""
        return f"{self.prefix}:changes"

    @property
    def changes_quiet(self) -> str:
        """Where a delivery that leaves a connected connection connected is published instead of
        ``changes`` (an event counted: the common case by far). The status API's streams follow both;
        the receivers' caches only ``changes``, since nothing they keep changed."""
        return quiet_changes(self.changes)

    # --- notification endpoints (services/notifier) ---------------------------------------------

    def endpoint(self, eid: str) -> str:
        """Hash: one notification endpoint (url, account_id, events, secret, status, failure counters)."""
        return f"{self.prefix}:notify:{{{eid}}}:endpoint"

    def endpoint_attempts(self, eid: str) -> str:
        """List: the endpoint's latest delivery attempts (JSON), newest first."""
        return f"{self.prefix}:notify:{{{eid}}}:attempts"

    @property
    def endpoints(self) -> str:
        """Set: every endpoint id."""
        return f"{self.prefix}:notify:endpoints"

    @property
    def endpoints_any_account(self) -> str:
        """Set: the ids of endpoints without an account_id (they get every account's events)."""
        return f"{self.prefix}:notify:endpoints:any"

    def account_endpoints(self, account_id: str) -> str:
        """Set: the ids of the endpoints of one account."""
        return f"{self.prefix}:notify:acct:{{{account_id}}}:endpoints"

    @property
    def endpoints_disabled(self) -> str:
        """Set: the ids of disabled endpoints (read by the gauge)."""
        return f"{self.prefix}:notify:endpoints:disabled"
