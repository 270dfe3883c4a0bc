"""The shapes the status API returns (see docs/API.md). Timestamps are ISO 8601 UTC strings.

Generated from services/status_api/schema.py by `make schema`; do not edit by hand.
"""

from __future__ import annotations

from typing import Literal, TypedDict

State = Literal["pending", "connected", "failed", "disconnected"]
Display = Literal["connected", "pending", "failing", "silent", "failed", "disconnected"]
HealthState = Literal["ok", "failing", "silent"]
TestState = Literal["waiting", "passed", "failed"]
CtaAction = Literal["connect", "reconnect", "send_test"]
Outcome = Literal["verified", "rejected", "reachable"]
HopName = Literal["received", "verified", "rejected", "queued", "consumed", "stored", "pushed"]


class Cta(TypedDict):
    """The connect button: shown as is, no logic needed in the UI (the table is in docs/API.md)."""

    label: str
    action: CtaAction | None
    secondary: str | None
    secondary_action: CtaAction | None
    # The state's reason in plain words
    hint: str | None


class LastError(TypedDict):
    """The most recent rejected delivery."""

    code: str
    message: str
    at: str | None


class FailedDetail(TypedDict):
    """The most frequent rejection before the deadline of a failed connection."""

    code: str
    message: str | None


class Hops(TypedDict):
    """When the delivery a test follows (the first verified one, else the latest to arrive) reached each     hop,
    in this order; null: not reached. ``verified`` or ``rejected``, never both."""

    delivery_id: str | None
    # The receiver read the request
    received: str | None
    # The receiver verified its signature
    verified: str | None
    # The receiver rejected it (rejected_reason says why)
    rejected: str | None
    # The broker confirmed the delivery message
    queued: str | None
    # A verifier took it from the queue
    consumed: str | None
    # It was stored and matched to the test
    stored: str | None
    # A status API pushed the change to its live streams
    pushed: str | None
    rejected_reason: str | None
    # It repeats an event already received (a provider's retry): the verifier took it but stored nothing, so
    # it cannot pass the test
    duplicate: bool
    # The furthest hop reached; null: nothing reached the receiver
    last: HopName | None
    # The furthest hop reached, in plain words
    message: str


class LastTest(TypedDict):
    """A test window: the next verified event (or handshake) passes it."""

    id: str
    state: TestState
    reason: str | None
    reason_message: str | None
    # Rejected deliveries during the window, by reason code
    seen: dict[str, int]
    started_at: str | None
    expires_at: str | None
    finished_at: str | None
    hops: Hops


class Silence(TypedDict):
    """Why a silent connection is silent (null unless display is silent)."""

    # The limit it passed: its expected_interval_s, or the one its rhythm taught (the shorter)
    cause: Literal["expected_interval", "learned_rhythm"]
    # When it turned silent: the last verified event plus the limit
    since: str
    # Seconds since the last verified event
    quiet_for_s: int
    # The gap after which it counts as silent
    limit_s: int
    # The silence in plain words
    message: str


class Rhythm(TypedDict):
    """How the connection's verified events are usually spaced, learnt from them (null before two)."""

    # Gaps between verified events learnt from
    gaps_learned: int
    # Their weighted mean
    usual_gap_s: float
    # Their weighted standard deviation
    spread_s: float
    # The gap after which the rhythm says silent; null until enough events were seen
    silent_after_s: int | None


class ConnectionTest(LastTest):
    """A test window, with the connection it tests and how to send a test event."""

    connection_id: str
    instructions: str


class Connection(TypedDict):
    """A connection's status. Never carries the secret."""

    id: str
    account_id: str
    provider: str
    state: State
    reason: str | None
    reason_message: str | None
    # For a connected connection: ok, failing or silent
    health: HealthState | None
    # One word a UI can style without logic
    display: Display
    silence: Silence | None
    rhythm: Rhythm | None
    cta: Cta
    last_test: LastTest | None
    webhook_url: str
    pending_deadline: str | None
    created_at: str | None
    updated_at: str | None
    last_event_at: str | None
    # The last handshake that proves only that the URL is reachable (never connects)
    reachable_at: str | None
    # When a handshake set the signing secret (Asana)
    secret_learnt_at: str | None
    events_received: int
    last_error: LastError | None
    failed_detail: FailedDetail | None
    previous_secret_active: bool
    previous_secret_last_used_at: str | None
    version: int


class CreatedConnection(Connection):
    """The status of a new connection, with its secret (shown this once)."""

    secret: str


class Delivery(TypedDict):
    """One delivery as received (never a body or a secret)."""

    id: str
    at: str | None
    outcome: Outcome
    reason: str | None
    message: str | None
    event_id: str | None
    event_type: str | None
    is_test: bool
    handshake: bool
    # A held request that verified after a fix
    recovered: bool
    # For a recovered one: its rejected delivery's id
    recovered_from: str | None
    # For secret_of_other_connection: the connection whose secret signed it
    other_connection_id: str | None


class Provider(TypedDict):
    """A supported provider and what its setup needs."""

    name: str
    title: str
    headers: list[str]
    scheme: str
    handshake: str | None
    secret_format: str
    # Setting name -> what it is (required: ... / optional: ...)
    settings: dict[str, str]
    test_instructions: str
    # payments, commerce, communication, identity, developer tools, ...
    category: str
    # The steps to take in the provider's dashboard, in order
    setup: list[str]
    # The provider's documentation of its signing scheme
    docs_url: str
    # sdk:<package>, vector:<docs url> or scheme:<docs url>: what our verification was tested against
    checked_against: str


class BrowserToken(TypedDict):
    """A short-lived token for one account's page."""

    token: str
    # ISO 8601 UTC, milliseconds
    expires_at: str
    account_id: str


class NotificationEndpoint(TypedDict):
    """Where the product receives notifications. Never carries the secret."""

    id: str
    url: str
    # null: every account's events
    account_id: str | None
    # null: every event type
    events: list[str] | None
    status: Literal["enabled", "disabled"]
    disabled_reason: str | None
    disabled_at: str | None
    # Events in a row that failed every attempt
    failed_events: int
    failing_since: str | None
    created_at: str | None


class CreatedNotificationEndpoint(NotificationEndpoint):
    """A new endpoint, with its signing secret (whsec_..., Standard Webhooks; shown this once)."""

    secret: str


class NotificationAttempt(TypedDict):
    """One attempt to deliver one event to one endpoint."""

    # The webhook-id header: the same for every attempt of one event
    event_id: str
    type: str
    attempt: int
    at: str | None
    outcome: Literal["delivered", "failed", "skipped"]
    # The endpoint's HTTP status, when it answered
    status: int | None
    error: str | None
    next_retry_at: str | None


class HeldDelivery(TypedDict):
    """A rejected request held, sealed, to be verified again after a fix. Never its body or headers."""

    # The id of its rejected delivery
    id: str
    received_at: str | None
    # Why it was rejected (a reason code)
    reason: str
    # Bytes held: body, headers and query
    size: int
    # The provider's event id, when known
    event_id: str | None
    # For secret_of_other_connection: the connection whose secret signed it
    other_connection_id: str | None


class ReverifyResult(TypedDict):
    """What verifying the held requests again did."""

    # Held requests verified again
    checked: int
    # Verified now, queued as verified deliveries, no longer held
    recovered: int
    # Still not verified; they stay held
    still_rejected: int
