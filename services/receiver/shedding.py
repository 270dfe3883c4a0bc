"""Load shedding: past its bounds, the receiver answers a new webhook 503 ``overloaded`` at once.

A receiver that admits everything lets every request wait longer once the broker (or the process)
cannot keep up: at first for its confirm, then past ``PUBLISH_TIMEOUT_S``, for a 503 anyway after
costing its full work. Instead, before a webhook's body is read or verified, it is refused with
``Retry-After`` while this process is past either bound:

- ``SHED_IN_FLIGHT``: webhooks whose body is in and that are not answered yet (nearly all of that time
  is the wait for the broker's confirm). Counted once the body is in, checked again then (with no wait
  between the check and the count), so a burst that arrives in one go cannot slip past it; a request
  still sending its body is not counted: a stranger holding many slow requests open (each cut off at
  ``BODY_READ_TIMEOUT_S``, 408) would otherwise have every provider's webhooks refused;
- ``SHED_CONFIRM_WAIT_S``: how long the oldest publish of this process has been waiting for its
  confirm (the broker, or the link to it, is slow: new webhooks would wait as long).

A shed webhook is not published and not answered 202, so nothing it was told is lost: the provider
retries. 0 turns a bound off.
"""

from __future__ import annotations

import time

from shared import metrics
from shared.broker import ConfirmedPublisher
from shared.errors import ServiceUnavailable
from shared.logs import Summary

RETRY_AFTER_S = 1  # an overload passes quickly (or the next answer says so again)


class Admission:
    def __init__(self, publisher: ConfirmedPublisher, in_flight_max: int, confirm_wait_max_s: float,
                 summary: Summary) -> None:
        self.publisher = publisher
        self.in_flight_max = in_flight_max
        self.confirm_wait_max_s = confirm_wait_max_s
        self.summary = summary
        self.in_flight = 0

    def over(self) -> str | None:
        """The bound this process is past now, if any."""
        if self.in_flight_max and self.in_flight >= self.in_flight_max:
            return "in_flight"
        if self.confirm_wait_max_s and self.publisher.oldest_wait_s(time.monotonic()) >= self.confirm_wait_max_s:
            return "confirm_wait"
        return None

    def check(self) -> None:
        """Refuse a new webhook while past a bound (503 ``overloaded``), before anything of it is read."""
        self._refuse_if_over()

    def admit(self) -> None:
        """Count one webhook whose body is in (``leave`` when it is answered), or refuse it: 503."""
        self._refuse_if_over()
        self.in_flight += 1

    def _refuse_if_over(self) -> None:
        reason = self.over()
        if reason is not None:
            metrics.child(metrics.WEBHOOKS_SHED, reason).inc()
            self.summary.count("reason", reason)
            raise ServiceUnavailable("The receiver is overloaded right now; retry shortly.", code="overloaded",
                                     retry_after_s=RETRY_AFTER_S, reason=reason)

    def leave(self) -> None:
        self.in_flight -= 1
