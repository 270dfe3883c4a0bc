"""The status API's request and response shapes, defined once.

Everything else follows from these models:

- request validation (``validation.py`` validates bodies with the request models);
- the OpenAPI document served at ``/openapi.json`` (``schema_gen.py`` builds it from the models' JSON
  Schemas and writes ``openapi.json``);
- the typed client's ``hookstatus_client/types.py`` (TypedDicts generated from the response models).

Responses are still built as plain dicts and encoded with orjson (the status API's hot path); the
tests check that what the API serves validates against the response models, and that the committed
``openapi.json`` and ``types.py`` are what ``make schema`` generates from this module.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo
from pydantic_core import PydanticCustomError

State = Literal["pending", "connected", "failed", "disconnected"]
Display = Literal["connected", "pending", "failing", "silent", "failed", "disconnected"]
HealthState = Literal["ok", "failing", "silent"]
TestState = Literal["waiting", "passed", "failed"]
CtaAction = Literal["connect", "reconnect", "send_test"]
Outcome = Literal["verified", "rejected", "reachable"]
PrincipalKind = Literal["service", "browser"]

ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9_.:@-]{1,128}$"
ACCOUNT_ID_WORDS = "1-128 characters of letters, digits and _.:@-"
CONNECTION_ID_WORDS = "A connection id: 32 lowercase hex characters."
YEAR_S = 365 * 24 * 3600


# --- field types ----------------------------------------------------------------------------------

def _within_configured_limit(value: int, info: ValidationInfo) -> int:
    """The upper bound of some durations is a setting (``MAX_TIMEOUT_S``...): the caller passes the
    bounds by field name as the validation context."""
    limits = info.context if isinstance(info.context, dict) else {}
    high = limits.get(info.field_name or "")
    if isinstance(high, int) and value > high:
        raise PydanticCustomError("less_than_equal", "Input should be less than or equal to {le}", {"le": high})
    return value


AccountId = Annotated[str, Field(pattern=ACCOUNT_ID_PATTERN, description=ACCOUNT_ID_WORDS, examples=["acct_42"])]
Seconds = Annotated[int, Field(ge=1), AfterValidator(_within_configured_limit)]
Count = Annotated[int, Field(ge=1), AfterValidator(_within_configured_limit)]
Secret = Annotated[str, Field(min_length=1, max_length=4096)]
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
Timestamp = Annotated[str, Field(pattern=TIMESTAMP_PATTERN, description="ISO 8601 UTC, milliseconds",
                                 examples=["2026-11-27T16:30:00.123Z"])]


class RequestModel(BaseModel):
    """A request body: unknown fields are refused, types are not coerced, null means absent."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ResponseModel(BaseModel):
    """An answer: every field is always present (null when it has no value), and nothing else is."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --- requests -------------------------------------------------------------------------------------

class NewConnection(RequestModel):
    """A connection to create (service token, or a browser token with a create grant)."""

    account_id: AccountId
    provider: str = Field(min_length=1, max_length=64, description="A name from GET /v1/providers",
                          examples=["standard-webhooks", "stripe", "github"])
    timeout_s: Seconds | None = Field(
        None, description="How long to wait for the first verified event (default 600)")
    secret: Secret | None = Field(
        None, description="The signing secret from the provider's dashboard; generated when absent")
    settings: dict[str, Any] | None = Field(None, description="Provider settings (see GET /v1/providers)")
    expected_interval_s: Annotated[int, Field(ge=1, le=YEAR_S)] | None = Field(
        None, description="Silence longer than this shows as health=silent (besides the learned rhythm)")


class Reconnect(RequestModel):
    """Back to pending: a new secret (the previous one keeps verifying for a while), new settings, a new
    deadline; each optional."""

    secret: Secret | None = None
    settings: dict[str, Any] | None = None
    timeout_s: Seconds | None = None


class NewTest(RequestModel):
    """A test window to open."""

    timeout_s: Seconds | None = Field(None, description="How long the window stays open (default 120)")


class CreateGrantRequest(RequestModel):
    """Let the page create connections (its provider picker)."""

    providers: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]],
                         Field(min_length=1, max_length=200)] | None = Field(
        None, description="Only these providers (names from GET /v1/providers); absent: any provider")
    limit: Count | None = Field(
        None, description="How many connections the token may create (default 3, at most MAX_CREATES_PER_TOKEN)")


class NewBrowserToken(RequestModel):
    """A browser token to mint (service token only)."""

    ttl_s: Seconds | None = Field(None, description="How long the token is valid (default 900)")
    create: CreateGrantRequest | None = Field(
        None, description="Absent: the token cannot create connections (the usual page token)")


# --- responses ------------------------------------------------------------------------------------

class Cta(ResponseModel):
    """The connect button: shown as is, no logic needed in the UI (the table is in docs/API.md)."""

    label: str
    action: CtaAction | None
    secondary: str | None
    secondary_action: CtaAction | None
    hint: str | None = Field(description="The state's reason in plain words")


class LastError(ResponseModel):
    """The most recent rejected delivery."""

    code: str
    message: str
    at: Timestamp | None


class FailedDetail(ResponseModel):
    """The most frequent rejection before the deadline of a failed connection."""

    code: str
    message: str | None


HopName = Literal["received", "verified", "rejected", "queued", "consumed", "stored", "pushed"]


class Hops(ResponseModel):
    """When the delivery a test follows (the first verified one, else the latest to arrive) reached each
    hop, in this order; null: not reached. ``verified`` or ``rejected``, never both."""

    delivery_id: str | None
    received: Timestamp | None = Field(description="The receiver read the request")
    verified: Timestamp | None = Field(description="The receiver verified its signature")
    rejected: Timestamp | None = Field(description="The receiver rejected it (rejected_reason says why)")
    queued: Timestamp | None = Field(description="The broker confirmed the delivery message")
    consumed: Timestamp | None = Field(description="A verifier took it from the queue")
    stored: Timestamp | None = Field(description="It was stored and matched to the test")
    pushed: Timestamp | None = Field(description="A status API pushed the change to its live streams")
    rejected_reason: str | None
    duplicate: bool = Field(description="It repeats an event already received (a provider's retry): the "
                            "verifier took it but stored nothing, so it cannot pass the test")
    last: HopName | None = Field(description="The furthest hop reached; null: nothing reached the receiver")
    message: str = Field(description="The furthest hop reached, in plain words")


class LastTest(ResponseModel):
    """A test window: the next verified event (or handshake) passes it."""

    id: str
    state: TestState
    reason: str | None
    reason_message: str | None
    seen: dict[str, int] = Field(description="Rejected deliveries during the window, by reason code")
    started_at: Timestamp | None
    expires_at: Timestamp | None
    finished_at: Timestamp | None
    hops: Hops


class ConnectionTest(LastTest):
    """A test window, with the connection it tests and how to send a test event."""

    connection_id: str
    instructions: str


class Silence(ResponseModel):
    """Why a silent connection is silent (null unless display is silent)."""

    cause: Literal["expected_interval", "learned_rhythm"] = Field(
        description="The limit it passed: its expected_interval_s, or the one its rhythm taught (the shorter)")
    since: Timestamp = Field(description="When it turned silent: the last verified event plus the limit")
    quiet_for_s: int = Field(ge=0, description="Seconds since the last verified event")
    limit_s: int = Field(ge=0, description="The gap after which it counts as silent")
    message: str = Field(description="The silence in plain words")


class Rhythm(ResponseModel):
    """How the connection's verified events are usually spaced, learnt from them (null before two)."""

    gaps_learned: int = Field(ge=1, description="Gaps between verified events learnt from")
    usual_gap_s: float = Field(description="Their weighted mean")
    spread_s: float = Field(description="Their weighted standard deviation")
    silent_after_s: int | None = Field(
        description="The gap after which the rhythm says silent; null until enough events were seen")


class Connection(ResponseModel):
    """A connection's status. Never carries the secret."""

    id: str
    account_id: str
    provider: str
    state: State
    reason: str | None
    reason_message: str | None
    health: HealthState | None = Field(description="For a connected connection: ok, failing or silent")
    display: Display = Field(description="One word a UI can style without logic")
    silence: Silence | None
    rhythm: Rhythm | None
    cta: Cta
    last_test: LastTest | None
    webhook_url: str
    pending_deadline: Timestamp | None
    created_at: Timestamp | None
    updated_at: Timestamp | None
    last_event_at: Timestamp | None
    reachable_at: Timestamp | None = Field(
        description="The last handshake that proves only that the URL is reachable (never connects)")
    secret_learnt_at: Timestamp | None = Field(description="When a handshake set the signing secret (Asana)")
    events_received: int = Field(ge=0)
    last_error: LastError | None
    failed_detail: FailedDetail | None
    previous_secret_active: bool
    previous_secret_last_used_at: Timestamp | None
    version: int


class CreatedConnection(Connection):
    """The status of a new connection, with its secret (shown this once)."""

    secret: str


class ConnectionList(ResponseModel):
    connections: list[Connection]


class Delivery(ResponseModel):
    """One delivery as received (never a body or a secret)."""

    id: str
    at: Timestamp | None
    outcome: Outcome
    reason: str | None
    message: str | None
    event_id: str | None
    event_type: str | None
    is_test: bool
    handshake: bool
    recovered: bool = Field(default=False, description="A held request that verified after a fix")
    recovered_from: str | None = Field(default=None, description="For a recovered one: its rejected delivery's id")
    other_connection_id: str | None = Field(
        default=None, description="For secret_of_other_connection: the connection whose secret signed it")


class DeliveryList(ResponseModel):
    deliveries: list[Delivery]


class HeldDelivery(ResponseModel):
    """A rejected request held, sealed, to be verified again after a fix. Never its body or headers."""

    id: str = Field(description="The id of its rejected delivery")
    received_at: Timestamp | None
    reason: str = Field(description="Why it was rejected (a reason code)")
    size: int = Field(ge=0, description="Bytes held: body, headers and query")
    event_id: str | None = Field(description="The provider's event id, when known")
    other_connection_id: str | None = Field(
        description="For secret_of_other_connection: the connection whose secret signed it")


class HeldDeliveryList(ResponseModel):
    held: list[HeldDelivery]


class ReverifyResult(ResponseModel):
    """What verifying the held requests again did."""

    checked: int = Field(ge=0, description="Held requests verified again")
    recovered: int = Field(ge=0, description="Verified now, queued as verified deliveries, no longer held")
    still_rejected: int = Field(ge=0, description="Still not verified; they stay held")


class Provider(ResponseModel):
    """A supported provider and what its setup needs."""

    name: str
    title: str
    headers: list[str]
    scheme: str
    handshake: str | None
    secret_format: str
    settings: dict[str, str] = Field(description="Setting name -> what it is (required: ... / optional: ...)")
    test_instructions: str
    category: str = Field(description="payments, commerce, communication, identity, developer tools, ...")
    setup: list[str] = Field(description="The steps to take in the provider's dashboard, in order")
    docs_url: str = Field(description="The provider's documentation of its signing scheme")
    checked_against: str = Field(description="sdk:<package>, vector:<docs url> or scheme:<docs url>: what our "
                                             "verification was tested against")


class ProviderList(ResponseModel):
    providers: list[Provider]
    categories: list[str] = Field(description="The categories of the providers listed, sorted")


class BrowserToken(ResponseModel):
    """A short-lived token for one account's page."""

    token: str
    expires_at: Timestamp
    account_id: str


class CreateGrant(ResponseModel):
    """What this browser token may still create."""

    providers: list[str] | None = Field(description="null: any provider")
    limit: int = Field(ge=1, description="Connections the token may create in all")
    remaining: int = Field(ge=0, description="Connections it may still create")


class Me(ResponseModel):
    """What the token is: a service token or a browser token of one account."""

    kind: PrincipalKind
    account_id: str | None
    create: CreateGrant | None = Field(description="A browser token's create grant; null: it cannot create")


class Health(ResponseModel):
    status: str


class Ready(ResponseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, bool]


class ErrorBody(ResponseModel):
    code: str = Field(description="A reason code, stable across releases")
    message: str = Field(description="What went wrong, in plain words")


class Error(ResponseModel):
    """Every error the API answers."""

    error: ErrorBody


# --- notification endpoints (the product's operational webhooks) -----------------------------------

NOTIFICATION_EVENTS_WORDS = (
    "connection.connected, connection.failed, connection.recovered, connection.failing, connection.silent, "
    "connection.disconnected, connection.reachable, test.passed, test.failed"
)


class NewNotificationEndpoint(RequestModel):
    """A notification endpoint to register (service token only)."""

    url: str = Field(min_length=1, max_length=2048, description="An absolute http or https URL; not a "
                     "loopback, private or link-local address", examples=["https://product.example/hooks/status"])
    account_id: AccountId | None = Field(None, description="Only this account's events; absent: every account's")
    events: Annotated[list[str], Field(min_length=1, max_length=9)] | None = Field(
        None, description=f"The event types to send ({NOTIFICATION_EVENTS_WORDS}); absent: every type")


class NotificationEndpoint(ResponseModel):
    """Where the product receives notifications. Never carries the secret."""

    id: str
    url: str
    account_id: str | None = Field(description="null: every account's events")
    events: list[str] | None = Field(description="null: every event type")
    status: Literal["enabled", "disabled"]
    disabled_reason: str | None
    disabled_at: Timestamp | None
    failed_events: int = Field(ge=0, description="Events in a row that failed every attempt")
    failing_since: Timestamp | None
    created_at: Timestamp | None


class CreatedNotificationEndpoint(NotificationEndpoint):
    """A new endpoint, with its signing secret (whsec_..., Standard Webhooks; shown this once)."""

    secret: str


class NotificationEndpointList(ResponseModel):
    endpoints: list[NotificationEndpoint]


class NotificationAttempt(ResponseModel):
    """One attempt to deliver one event to one endpoint."""

    event_id: str = Field(description="The webhook-id header: the same for every attempt of one event")
    type: str
    attempt: int = Field(ge=1)
    at: Timestamp | None
    outcome: Literal["delivered", "failed", "skipped"]
    status: int | None = Field(description="The endpoint's HTTP status, when it answered")
    error: str | None
    next_retry_at: Timestamp | None


class NotificationAttemptList(ResponseModel):
    attempts: list[NotificationAttempt]


REQUEST_MODELS: tuple[type[RequestModel], ...] = (NewConnection, Reconnect, NewTest, NewBrowserToken,
                                                  NewNotificationEndpoint)
RESPONSE_MODELS: tuple[type[ResponseModel], ...] = (
    Error, Connection, CreatedConnection, ConnectionList, ConnectionTest, Delivery, DeliveryList, Provider,
    ProviderList, BrowserToken, CreateGrant, Me, Health, Ready, NotificationEndpoint, CreatedNotificationEndpoint,
    NotificationEndpointList, NotificationAttempt, NotificationAttemptList, HeldDelivery, HeldDeliveryList,
    ReverifyResult,
)
