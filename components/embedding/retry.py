"""Retries with exponential backoff and full jitter, honouring ``Retry-After``.

The SDKs' own retries are switched off (``max_retries=0``) so that every provider retries the
same way and tests can observe it. :func:`call_with_retries` runs one request: transient
failures (:class:`~components.embedding.errors.TransientError`) are retried up to
``max_retries`` times (a 429 followed by other batches' progress is not counted), permanent
ones stop at once; when it gives up it raises
:class:`~components.embedding.errors.EmbeddingError` naming the provider, batch and cause.

Example:
    >>> policy = RetryPolicy(max_retries=2, initial_s=0.0, max_s=0.0)
    >>> call_with_retries(lambda: 42, policy, provider="local", batch="batch 0")
    42
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from .errors import EmbeddingError, PermanentError, RateLimitedError, TransientError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry.

    Attributes:
        max_retries: retries after the first attempt.
        initial_s: backoff before the first retry (before jitter).
        max_s: cap on any single backoff (a longer ``Retry-After`` is still honoured, capped
            at ``max_retry_after_s``).
        max_retry_after_s: the longest server-requested pause we accept.
    """

    max_retries: int = 6
    initial_s: float = 1.0
    max_s: float = 60.0
    max_retry_after_s: float = 300.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based): full jitter in
        ``[0.5, 1] x min(max_s, initial_s * 2**attempt)``, at least ``retry_after``."""
        ceiling = min(self.max_s, self.initial_s * (2**attempt))
        delay = ceiling * (0.5 + 0.5 * self.rng.random())
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after_s))
        return delay


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    value = lowered.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def call_with_retries(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    provider: str,
    batch: str,
    on_retry_after: Callable[[float], None] | None = None,
    stop: threading.Event | None = None,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[], int] | None = None,
    failed_before: int = 0,
) -> T:
    """Call ``fn`` until it succeeds, retrying transient errors per ``policy``.

    Every failure is charged to the retry budget (``max_retries``) except a 429 that is
    followed by progress (``progress()`` grew before the next failure): the server is busy
    with our other batches, not failing, so waiting for a turn is no failure. A server that
    answers 429 to everything makes no progress, so the budget still ends the run. The
    backoff starts again from ``initial_s`` after progress, so a busy server does not slow
    the run to a crawl.

    Args:
        fn: one attempt; raises TransientError / PermanentError on failure.
        policy: retry counts and backoff.
        provider / batch: named in the error when retries run out.
        on_retry_after: told about server-requested pauses (so all workers pause).
        stop: when set (another batch failed for good), give up instead of retrying.
        sleep: injectable for tests.
        progress: count of successful requests of the whole run (any batch); ``None``
            charges every failure.
        failed_before: failed attempts this batch already made elsewhere (e.g. a response
            rejected after it was returned); they count towards the budget.

    Raises:
        EmbeddingError: a permanent error, or retries exhausted.
    """
    attempts = charged = failed_before
    streak = 0  # failures since the last progress: the backoff exponent
    last_failure_mark: int | None = None  # progress() at the last failure
    rate_limited_mark: int | None = None  # progress() at the last 429, while it is charged
    while True:
        try:
            return fn()
        except PermanentError as exc:
            raise EmbeddingError(provider, batch, attempts + 1, str(exc), transient=False) from None
        except TransientError as exc:
            attempts += 1
            mark = progress() if progress is not None else None
            if rate_limited_mark is not None and mark is not None and mark > rate_limited_mark:
                charged -= 1  # the previous 429 was only our turn coming later
            progressed = (
                last_failure_mark is not None and mark is not None and mark > last_failure_mark
            )
            streak = 1 if progressed else streak + 1
            charged += 1
            last_failure_mark = mark
            rate_limited_mark = mark if isinstance(exc, RateLimitedError) else None
            if charged > policy.max_retries or (stop is not None and stop.is_set()):
                raise EmbeddingError(provider, batch, attempts, str(exc)) from None
            delay = policy.backoff(streak - 1, exc.retry_after)
            if exc.retry_after is not None and on_retry_after is not None:
                on_retry_after(delay)
            log.warning(
                "%s: %s attempt %d failed (%s); retrying in %.2fs",
                provider,
                batch,
                attempts,
                exc,
                delay,
            )
            sleep(delay)
