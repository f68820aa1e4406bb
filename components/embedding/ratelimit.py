"""Client-side rate limiting: requests and tokens per minute, shared by all worker threads.

Two token buckets (requests, tokens) refill continuously; :meth:`RateLimiter.acquire` blocks
until both hold enough. A 429 with ``Retry-After`` calls :meth:`RateLimiter.pause` so every
worker waits, not just the one that was told to.

Example:
    >>> limiter = RateLimiter(requests_per_minute=600, tokens_per_minute=None)
    >>> limiter.acquire(tokens=100)  # returns at once while the bucket is full
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class _Bucket:
    """Continuous refill at ``per_minute / 60`` per second; bursts up to ``burst_s`` worth."""

    def __init__(self, per_minute: float, burst_s: float) -> None:
        self.rate = per_minute / 60.0
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


class RateLimiter:
    """Blocks callers so requests/minute and tokens/minute stay under the configured limits.

    Args:
        requests_per_minute: limit on requests; ``None`` = unlimited.
        tokens_per_minute: limit on (estimated) tokens; ``None`` = unlimited.
        burst_s: the buckets hold this many seconds' worth, so a fresh limiter does not fire
            a whole minute's budget at once.
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
        self._requests = _Bucket(requests_per_minute, burst_s) if requests_per_minute else None
        self._tokens = _Bucket(tokens_per_minute, burst_s) if tokens_per_minute else None
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
        """Wait until one request carrying ``tokens`` may be sent, then account for it."""
        while True:
            with self._lock:
                now = self._clock()
                elapsed, self._last = now - self._last, now
                wait = self._paused_until - now
                for bucket, amount in ((self._requests, 1), (self._tokens, tokens)):
                    if bucket is not None:
                        bucket.refill(elapsed)
                        wait = max(wait, bucket.wait_for(amount))
                if wait <= 0:
                    if self._requests is not None:
                        self._requests.take(1)
                    if self._tokens is not None:
                        self._tokens.take(tokens)
                    return
            self._sleep(min(wait, 1.0))
