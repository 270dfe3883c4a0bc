"""Limits per principal, each a 429 with a reason code and ``Retry-After``.

- Open streams: a browser token may hold ``MAX_STREAMS_PER_TOKEN`` at once, and all the browser tokens
  of one account ``MAX_STREAMS_PER_ACCOUNT`` (``too_many_streams``). Counted per status API process (a
  stream lives in one process; with N replicas the bound is N times this), only for browser tokens: the
  product backend's service token is trusted with as many streams as it needs.
- Test windows: ``TESTS_PER_MINUTE`` opened per connection per minute, whoever asks
  (``too_many_tests``), counted in Redis so every replica shares the count.
- Re-verifications of held requests: ``REVERIFIES_PER_MINUTE`` per connection per minute asked by
  browser tokens (``too_many_reverifies``), in Redis likewise; each one opens and checks every held
  request. The service token is not counted: a leaked page token cannot hold back the product's fix.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from services.status_api.auth import Principal
from shared.errors import TooManyRequests

STREAM_RETRY_AFTER_S = 10


class StreamQuota:
    def __init__(self, per_token: int, per_account: int) -> None:
        self.per_token = per_token
        self.per_account = per_account
        self._by_token: Counter[str] = Counter()
        self._by_account: Counter[str] = Counter()

    @contextmanager
    def hold(self, principal: Principal) -> Iterator[None]:
        """One open stream for ``principal`` while inside; 429 when it has too many already."""
        if principal.kind != "browser" or principal.token_id is None or principal.account_id is None:
            yield
            return
        token, account = principal.token_id, principal.account_id
        if self._by_token[token] >= self.per_token:
            raise TooManyRequests(f"this token already has {self.per_token} open streams; close one first",
                                  code="too_many_streams", retry_after_s=STREAM_RETRY_AFTER_S)
        if self._by_account[account] >= self.per_account:
            raise TooManyRequests(f"this account already has {self.per_account} open streams; close one first",
                                  code="too_many_streams", retry_after_s=STREAM_RETRY_AFTER_S)
        self._by_token[token] += 1
        self._by_account[account] += 1
        try:
            yield
        finally:
            for counter, key in ((self._by_token, token), (self._by_account, account)):
                counter[key] -= 1
                if counter[key] <= 0:
                    del counter[key]


def too_many_reverifies(limit: int, retry_after_ms: int) -> TooManyRequests:
    return TooManyRequests(f"the held requests of a connection may be verified again at most {limit} times a "
                           "minute; retry later", code="too_many_reverifies",
                           retry_after_s=-(-retry_after_ms // 1000))


def too_many_tests(limit: int, retry_after_ms: int) -> TooManyRequests:
    return TooManyRequests(f"at most {limit} test windows a minute may be opened on a connection; "
                           "wait for the current one", code="too_many_tests",
                           retry_after_s=-(-retry_after_ms // 1000))
