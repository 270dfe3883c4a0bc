"""Prometheus metrics, named by Prometheus conventions. No connection id, account id or secret is
ever a label: labels are bounded sets (service, route template, status, provider, reason code)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

HTTP_REQUESTS = Counter(
    "hookstatus_http_requests_total", "HTTP requests served.", ["service", "route", "method", "status"]
)
HTTP_DURATION = Histogram(
    "hookstatus_http_request_duration_seconds", "HTTP request handling time.", ["service", "route"]
)
WEBHOOKS = Counter(
    "hookstatus_webhooks_total",
    "Webhooks received, by provider and outcome (verified or the rejection reason code).",
    ["provider", "outcome"],
)
PUBLISH_CONFIRM = Histogram(
    "hookstatus_publish_confirm_seconds",
    "Time from publishing a delivery to the broker's confirm.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
PUBLISH_FAILURES = Counter(
    "hookstatus_publish_failures_total", "Deliveries the broker did not confirm (answered 503)."
)
DELIVERIES_CONSUMED = Counter(
    "hookstatus_deliveries_consumed_total",
    "Delivery messages handled by the verifier, by result (applied, duplicate, ignored, dead_lettered).",
    ["result"],
)
CONSUME_SECONDS = Histogram(
    "hookstatus_consume_seconds",
    "Time from a webhook's arrival at the receiver to its effect stored by the verifier.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
STATE_TRANSITIONS = Counter(
    "hookstatus_state_transitions_total", "Connection state transitions.", ["from_state", "to_state"]
)
DEAD_LETTERED = Counter(
    "hookstatus_dead_lettered_total", "Messages sent to the dead-letter queue, by reason.", ["reason"]
)


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
