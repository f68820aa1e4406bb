"""The client-side rate limiter: no 60-second window may exceed the configured limit.

Simulated minutes on an injected clock (no real waiting): every grant is stamped with the
clock reading the limiter granted it at, and every 60-second window ``[t, t + 60)`` starting
at a grant is checked (the fullest window always starts at one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from components.embedding.ratelimit import RateLimiter

MINUTE = 60.0


class SharedFakeClock:
    """A clock shared by threads: ``sleep`` advances it; each thread remembers its last read.

    The limiter reads the clock once per check, under its lock, and grants on that reading,
    so a thread's last read after ``acquire`` returns is exactly its grant time.
    """

    def __init__(self) -> None:
        self._now = 0.0
        self._lock = threading.Lock()
        self._local = threading.local()

    def __call__(self) -> float:
        with self._lock:
            self._local.last = self._now
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._now += max(seconds, 1e-6)  # like a real sleep, never exactly zero

    @property
    def now(self) -> float:
        with self._lock:
            return self._now

    @property
    def last_read(self) -> float:
        return self._local.last


def fullest_window(grants: list[tuple[float, int]]) -> int:
    """Largest sum of amounts granted within any 60-second window ``[t, t + 60)``."""
    grants = sorted(grants)
    times = np.array([t for t, _ in grants])
    sums = np.concatenate([[0], np.cumsum([a for _, a in grants])])
    ends = np.searchsorted(times, times + MINUTE, side="left")
    return int(max(sums[end] - sums[start] for start, end in enumerate(ends)))


def run_acquirers(
    limiter: RateLimiter,
    clock: SharedFakeClock,
    *,
    threads: int,
    until_s: float,
    tokens: Callable[[int, int], int] = lambda thread, i: 0,
) -> list[tuple[float, int]]:
    """``threads`` greedy callers acquiring until the simulated clock passes ``until_s``."""
    grants: list[tuple[float, int]] = []
    lock = threading.Lock()

    def caller(thread: int) -> None:
        i = 0
        while clock.now < until_s:
            amount = tokens(thread, i)
            limiter.acquire(amount)
            with lock:
                grants.append((clock.last_read, amount))
            i += 1

    workers = [threading.Thread(target=caller, args=(t,), daemon=True) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
        assert not worker.is_alive()
    return grants


def test_no_minute_exceeds_requests_per_minute_with_concurrent_callers() -> None:
    clock = SharedFakeClock()
    limiter = RateLimiter(120, None, clock=clock, sleep=clock.sleep)
    grants = run_acquirers(limiter, clock, threads=4, until_s=5 * MINUTE)
    requests = [(t, 1) for t, _ in grants]
    assert fullest_window(requests) <= 120
    # Smoothed: a short burst (5 s worth) and the steady rate, never a minute's budget at t=0.
    assert sum(1 for t, _ in grants if t < 1.0) <= 12
    # ... and not slower than the limit needs: 5 minutes carry (nearly) 5 minutes' budget.
    assert len(grants) >= 0.95 * 5 * 120


def test_no_minute_exceeds_tokens_per_minute_with_concurrent_callers() -> None:
    clock = SharedFakeClock()
    limiter = RateLimiter(None, 6000, clock=clock, sleep=clock.sleep)
    sizes = np.random.default_rng(7).integers(1, 900, size=(3, 10_000))  # some above the burst
    grants = run_acquirers(
        limiter, clock, threads=3, until_s=5 * MINUTE, tokens=lambda t, i: int(sizes[t, i])
    )
    assert fullest_window(grants) <= 6000
    # burst (5 s worth) + the largest request + 1 s of rate: not a minute's budget
    assert sum(a for t, a in grants if t < 1.0) <= 500 + 900 + 100
    assert sum(a for _, a in grants) >= 0.9 * 5 * 6000


def test_both_limits_hold_together_across_pauses() -> None:
    clock = SharedFakeClock()
    limiter = RateLimiter(120, 4000, clock=clock, sleep=clock.sleep)
    grants: list[tuple[float, int]] = []
    pauses: list[tuple[int, float]] = []  # (next grant's index, pause time)
    i = 0
    while clock.now < 6 * MINUTE:
        if i % 50 == 49:  # a 429 with Retry-After: every caller holds, then may burst again
            limiter.pause(7.0)
            pauses.append((len(grants), clock.last_read))
        amount = 10 + (i * 37) % 90
        limiter.acquire(amount)
        grants.append((clock.last_read, amount))
        i += 1
    assert len(pauses) >= 3
    assert fullest_window([(t, 1) for t, _ in grants]) <= 120
    assert fullest_window(grants) <= 4000
    for next_grant, paused_at in pauses:
        assert grants[next_grant][0] >= paused_at + 7.0


def test_request_larger_than_a_minute_of_tokens_goes_alone() -> None:
    clock = SharedFakeClock()
    limiter = RateLimiter(None, 1000, clock=clock, sleep=clock.sleep)
    limiter.acquire(300)
    first = clock.last_read
    limiter.acquire(1500)  # can never fit a window: waits until the window is empty
    assert clock.last_read >= first + MINUTE
    limiter.acquire(10)  # and nothing joins it within its minute
    assert clock.last_read >= first + 2 * MINUTE
