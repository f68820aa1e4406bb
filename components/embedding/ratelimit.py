"""Client-side rate limiting: requests and tokens per minute, shared by all worker threads.

Each limit is enforced by two mechanisms that must both agree before a request goes out:

* a *sliding 60-second window* of what was granted: a grant is allowed only if the grants of
  the last 60 s plus this one stay within the per-minute limit, so **no 60-second window ever
  exceeds it** (a token bucket alone lets its burst come on top of the rate: 129 requests in
  the first minute at 120/min);
* a *token bucket* holding ``burst_s`` seconds' worth, which smooths the flow: a fresh limiter
  sends a short burst and then the steady rate, never a whole minute's budget at t=0.

A 429 with ``Retry-After`` calls :meth:`RateLimiter.pause` so every worker waits, not just the
one that was told to. The interface is two methods (:class:`RequestRateLimiter`) so that a
limiter shared across processes (e.g. a Dask cluster) can replace this one.

Example:
    >>> limiter = RateLimiter(requests_per_minute=600, tokens_per_minute=None)
    >>> limiter.acquire(tokens=100)  # returns at once while the bucket is full
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

#: The window the limits are stated in ("per minute").
WINDOW_S = 60.0
#: Shortest sleep while waiting: keeps float rounding at a window edge from spinning.
_MIN_SLEEP_S = 1e-3


class RequestRateLimiter(Protocol):
    """What the orchestrator needs from a rate limiter."""

    def acquire(self, tokens: int = 0) -> None:
        """Block until one request carrying ``tokens`` may be sent, and account for it."""

    def pause(self, seconds: float) -> None:
        """Hold every caller for ``seconds`` from now (the server asked us to back off)."""


class _Bucket:
    """Continuous refill at ``per_minute / 60`` per second; bursts up to ``burst_s`` worth."""

    def __init__(self, per_minute: float, burst_s: float) -> None:
        self.rate = per_minute / WINDOW_S
        self.capacity = max(1.0, self.rate * burst_s)
        self.level = self.capacity

    def refill(self, elapsed: float) -> None:
        self.level = min(self.capacity, self.level + elapsed * self.rate)

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (amounts above capacity wait for a full one)."""
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, amount: float) -> None:
        # May go negative: a request larger than the burst is paid for by later waits.
        self.level -= amount


class _SlidingWindow:
    """Grants of the last :data:`WINDOW_S` seconds; keeps their sum within ``limit``.

    A grant at time ``s`` counts in every window ``[a, a + 60)`` that contains ``s``; it
    leaves the window at ``s + 60``.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._grants: deque[tuple[float, int]] = deque()
        self._total = 0  # integer amounts: the sum never drifts

    def _expire(self, now: float) -> None:
        while self._grants and self._grants[0][0] + WINDOW_S <= now:
            self._total -= self._grants.popleft()[1]

    def wait_for(self, amount: int, now: float) -> float:
        """Seconds until granting ``amount`` keeps the window within the limit.

        An amount above the whole limit can never fit; it waits for an empty window and is
        then granted alone (the best any client can do).
        """
        self._expire(now)
        if self._total + amount <= self.limit or not self._grants:
            return 0.0
        excess = self._total + amount - max(self.limit, amount)
        freed = 0
        for granted_at, granted in self._grants:
            freed += granted
            if freed >= excess:
                return granted_at + WINDOW_S - now
        raise AssertionError("unreachable: freeing every grant empties the window")

    def take(self, amount: int, now: float) -> None:
        self._grants.append((now, amount))
        self._total += amount


class _Limit:
    """One per-minute limit: the window guarantees it, the bucket smooths it."""

    def __init__(self, per_minute: float, burst_s: float) -> None:
        self.per_minute = per_minute
        self.bucket = _Bucket(per_minute, burst_s)
        self.window = _SlidingWindow(per_minute)


class RateLimiter:
    """Blocks callers so that no 60-second window holds more requests/tokens than configured.

    Args:
        requests_per_minute: limit on requests; ``None`` = unlimited.
        tokens_per_minute: limit on (estimated) tokens; ``None`` = unlimited.
        burst_s: the smoothing buckets hold this many seconds' worth, so a fresh limiter does
            not fire a whole minute's budget at once.
        clock / sleep: injectable for tests.
    """

    def __init__(
        self,
        requests_per_minute: float | None,
        tokens_per_minute: float | None,
        burst_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._requests = _Limit(requests_per_minute, burst_s) if requests_per_minute else None
        self._tokens = _Limit(tokens_per_minute, burst_s) if tokens_per_minute else None
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._last = clock()
        self._paused_until = 0.0

    def pause(self, seconds: float) -> None:
        """Hold every caller for ``seconds`` from now (server asked us to back off)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def acquire(self, tokens: int = 0) -> None:
        """Wait until one request carrying ``tokens`` may be sent, then account for it.

        A request of more tokens than ``tokens_per_minute`` can never fit a window; it is
        sent alone once the window is empty, with a warning.
        """
        if self._tokens is not None and tokens > self._tokens.per_minute:
            log.warning(
                "one request of ~%d tokens exceeds tokens_per_minute=%g; it is sent alone "
                "once the last minute is clear (lower max_input_tokens to avoid this)",
                tokens,
                self._tokens.per_minute,
            )
        while True:
            with self._lock:
                now = self._clock()
                elapsed, self._last = now - self._last, now
                wait = self._paused_until - now
                for limit, amount in ((self._requests, 1), (self._tokens, tokens)):
                    if limit is not None:
                        limit.bucket.refill(elapsed)
                        wait = max(
                            wait, limit.bucket.wait_for(amount), limit.window.wait_for(amount, now)
                        )
                if wait <= 0:
                    for limit, amount in ((self._requests, 1), (self._tokens, tokens)):
                        if limit is not None:
                            limit.bucket.take(amount)
                            limit.window.take(amount, now)
                    return
            self._sleep(min(max(wait, _MIN_SLEEP_S), 1.0))
