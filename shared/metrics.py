"""Prometheus metrics, named by Prometheus conventions (``_total`` counters, ``_seconds`` base units).

No connection id, account id or secret is ever a label: labels are bounded sets (service, route
template, method, status, provider, outcome/reason code, state, queue role). Every metric here is
listed in ``docs/METRICS.md``; a test checks that the table and ``/metrics`` agree.

Every process imports this module, so every service's ``/metrics`` exposes every family; the docs say
which service sets which. The gauges that describe shared state (connections by state, the pending
backlog, queue depths) are refreshed by each verifier replica from Redis and RabbitMQ, so every
replica reports the same value: aggregate them with ``max``, never ``sum``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

import prometheus_client
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import REGISTRY, CollectorRegistry
from prometheus_client.utils import INF, floatToGoString

# No ``*_created`` series: they double the families a dashboard sees and nothing here reads them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]


# --- the families counted once per request or per message ------------------------------------------


class _Count:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self.value += amount


class _Spread:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)  # observations in each bucket alone (not cumulative)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bound >= value: Prometheus' ``le``
        self.sum += value


class _LoopFamily:
    """A labelled family counted in plain numbers and handed to Prometheus when scraped, for the few
    updated on every request or message. ``prometheus_client``'s own take a lock and check their state
    on every update: measured under callgrind, a request's counter and histogram were about 26,000
    instructions, a twentieth of a status read. These are updated by the process's one event loop
    thread only (every service here is one such thread), so they need no lock. Same names, types, labels
    and exposition as the library's; ``labels`` and the updates keep the library's signatures."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                 registry: CollectorRegistry | None = REGISTRY) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], Any] = {}
        if registry is not None:
            registry.register(self)

    def _new(self) -> Any:
        raise NotImplementedError

    def labels(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes the labels {self.labelnames}, not {values}")
            child = self._children[values] = self._new()
        return child

    def _family(self) -> Metric:
        raise NotImplementedError

    def _add(self, family: Metric, values: tuple[str, ...], child: Any) -> None:
        raise NotImplementedError

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, child in list(self._children.items()):
            self._add(family, values, child)
        yield family


class LoopCounter(_LoopFamily):
    """A counter (``_LoopFamily``): ``labels(...).inc()``, or ``inc()`` on one without labels."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                 registry: CollectorRegistry | None = REGISTRY) -> None:
        super().__init__(name, documentation, labelnames, registry)
        if not self.labelnames:
            self.inc = self.labels().inc

    def _new(self) -> _Count:
        return _Count()

    def _family(self) -> Metric:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: Metric, values: tuple[str, ...], child: _Count) -> None:
        assert isinstance(family, CounterMetricFamily)
        family.add_metric(values, child.value)


class LoopHistogram(_LoopFamily):
    """A histogram (``_LoopFamily``), with the library's default buckets unless given others:
    ``labels(...).observe(seconds)``, or ``observe(seconds)`` on one without labels."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                 buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
                 registry: CollectorRegistry | None = REGISTRY) -> None:
        bounds = tuple(sorted(float(b) for b in buckets))
        self.bounds = bounds if bounds and bounds[-1] == INF else (*bounds, INF)
        super().__init__(name, documentation, labelnames, registry)
        if not self.labelnames:
            self.observe = self.labels().observe

    def _new(self) -> _Spread:
        return _Spread(self.bounds)

    def _family(self) -> Metric:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: Metric, values: tuple[str, ...], child: _Spread) -> None:
        assert isinstance(family, HistogramMetricFamily)
        cumulative, buckets = 0, []
        for bound, count in zip(self.bounds, list(child.counts), strict=True):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
        family.add_metric(values, buckets, child.sum)


# --- HTTP (receiver, status API, verifier's health server) ---------------------------------------
HTTP_REQUESTS = LoopCounter(
    "hookstatus_http_requests_total", "HTTP requests served.", ["service", "route", "method", "status"]
)
HTTP_DURATION = LoopHistogram(
    "hookstatus_http_request_duration_seconds", "HTTP request handling time.", ["service", "route"]
)

# --- receiver ------------------------------------------------------------------------------------
WEBHOOKS = LoopCounter(
    "hookstatus_webhooks_total",
    "Webhooks received, by provider and outcome (verified or the rejection reason code).",
    ["provider", "outcome"],
)
PUBLISH_CONFIRM = LoopHistogram(
    "hookstatus_publish_confirm_seconds",
    "Time from publishing a delivery to the broker's confirm.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
PUBLISH_FAILURES = Counter(
    "hookstatus_publish_failures_total", "Deliveries the broker did not confirm (answered 503)."
)
WEBHOOKS_SHED = Counter(
    "hookstatus_webhooks_shed_total",
    "Webhooks answered 503 overloaded before being read, by which bound was passed "
    "(in_flight: webhooks admitted and not answered yet; confirm_wait: how long the oldest publish has "
    "waited for its confirm).",
    ["reason"],
)
WEBHOOKS_IN_FLIGHT = Gauge(
    "hookstatus_webhooks_in_flight", "Webhooks this receiver process admitted and has not answered yet."
)

HELD_REQUESTS = Counter(
    "hookstatus_held_requests_total",
    "Rejected requests held (sealed) to be verified again after a fix of the connection's secret or settings.",
)
HELD_DROPPED = Counter(
    "hookstatus_held_dropped_total",
    "Held requests dropped before a fix verified them, by why (expired, connection_limit, total_limit, "
    "too_large, unreadable).",
    ["reason"],
)
REVERIFIED = Counter(
    "hookstatus_reverified_total",
    "Held requests verified again, by outcome (recovered: published as verified; still_rejected).",
    ["outcome"],
)

# --- verifier ------------------------------------------------------------------------------------
DELIVERIES_CONSUMED = LoopCounter(
    "hookstatus_deliveries_consumed_total",
    "Delivery messages handled by the verifier, by result (applied, duplicate, ignored, dead_lettered).",
    ["result"],
)
CONSUME_SECONDS = LoopHistogram(
    "hookstatus_consume_seconds",
    "Time from a webhook's arrival at the receiver to its effect stored by the verifier.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DEAD_LETTERED = Counter(
    "hookstatus_dead_lettered_total", "Messages sent to the dead-letter queue, by reason.", ["reason"]
)
SETUP_TO_CONNECTED = Histogram(
    "hookstatus_setup_to_connected_seconds",
    "Time from a connection's creation to its first pending -> connected transition (the funnel).",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600, 7 * 24 * 3600),
)
QUEUE_MESSAGES = Gauge(
    "hookstatus_queue_messages",
    "Messages ready in a RabbitMQ queue (deliveries: consumer lag; dead_letter: parked messages).",
    ["queue"],
)
QUEUE_CONSUMERS = Gauge("hookstatus_queue_consumers", "Consumers attached to a RabbitMQ queue.", ["queue"])

# --- every state change, wherever it is made (counted in shared/store.py) -------------------------
STATE_TRANSITIONS = Counter(
    "hookstatus_state_transitions_total",
    "Connection state transitions (from_state 'none' is a creation).",
    ["from_state", "to_state"],
)

# --- shared state, refreshed periodically by the verifier from Redis -----------------------------
CONNECTIONS = Gauge("hookstatus_connections", "Connections by state.", ["state"])
PENDING_PAST_DEADLINE = Gauge(
    "hookstatus_pending_past_deadline",
    "Entries in the pending index whose deadline has passed: the timeout sweep's backlog.",
)
GAUGES_REFRESHED = Gauge(
    "hookstatus_gauges_refreshed_timestamp_seconds",
    "When this process last refreshed the shared-state gauges (0: never).",
)

# --- status API ----------------------------------------------------------------------------------
ANALYTICS_EVENTS = Counter(
    "hookstatus_analytics_events_total", "Product analytics events that happened, by event name.", ["event"]
)
ANALYTICS_DROPPED = Counter(
    "hookstatus_analytics_dropped_total",
    "Analytics events not published, by event and why (queue_full, broker_unavailable).",
    ["event", "reason"],
)
STATUS_VIEWED = Counter(
    "hookstatus_status_viewed_total", "Statuses shown to people, by what was shown.", ["status"]
)
SSE_STREAMS = Gauge("hookstatus_sse_streams", "Server-Sent Event streams open in this process.")
SSE_DROPPED = Counter(
    "hookstatus_sse_dropped_total", "Streams ended because their reader fell behind or stopped reading."
)

# --- notifier ------------------------------------------------------------------------------------
NOTIFICATIONS_RELAYED = Counter(
    "hookstatus_notifications_relayed_total",
    "Transition events published from the connections' outboxes to RabbitMQ, by event type.",
    ["type"],
)
NOTIFICATION_ATTEMPTS = Counter(
    "hookstatus_notification_attempts_total",
    "Attempts to deliver an event to an endpoint, by outcome (delivered, http_error, timeout, "
    "connection_error, loopback_address, private_address, skipped_disabled).",
    ["outcome"],
)
NOTIFICATIONS_PENDING = Gauge(
    "hookstatus_notification_deliveries_pending",
    "Deliveries to endpoints waiting for an attempt or a retry (messages in the attempts and delay queues).",
)
NOTIFICATION_ENDPOINTS_DISABLED = Gauge(
    "hookstatus_notification_endpoints_disabled", "Notification endpoints disabled after failing."
)


_CHILDREN: dict[tuple[object, tuple[str, ...]], Any] = {}


def child(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, looked up once per label set: on the per-request path, prometheus'
    own ``labels()`` validates and locks on every call. Label sets are bounded (see above), so is this."""
    key = (metric, values)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*values)
    return found


def render() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
