"""Adaptive limit on requests in flight (AIMD), shared by all worker threads of a config.

Servers such as Text Embeddings Inference or vLLM admit a fixed number of concurrent requests
and answer 429 to the rest. A fixed ``max_concurrency`` above that cap turns most requests
into 429s. :class:`AdaptiveConcurrencyLimit` starts at ``max_concurrency`` and follows the
server: additive increase, multiplicative decrease, as TCP does:

* a 429 halves the limit (never below 1) - once per congestion signal: 429s of requests
  sent before the last decrease were caused by the old limit and are not counted again;
* after a window of successes (``max(limit, min_window)`` in a row) the limit grows by 1,
  never above ``max_concurrency``. The window is at least ``min_window`` so that probing a
  server that admits a single request costs one 429 per ``min_window`` batches, not one per
  batch.

Example:
    >>> limit = AdaptiveConcurrencyLimit(4)
    >>> with limit.slot() as slot:
    ...     pass  # send the request; on a 429 call slot.overloaded()
    >>> limit.limit
    4
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

#: Fewest consecutive successes before the limit grows by one.
MIN_INCREASE_WINDOW = 4


class Slot:
    """One request's permission to be in flight; tell it how the request went."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.outcome: str = "done"  # "done" (neither signal), "ok" or "overloaded"

    def succeeded(self) -> None:
        """The server answered (the request counts towards growing the limit)."""
        self.outcome = "ok"

    def overloaded(self) -> None:
        """The server answered 429 (the limit shrinks)."""
        self.outcome = "overloaded"


class AdaptiveConcurrencyLimit:
    """AIMD limit on requests in flight.

    Args:
        maximum: the configured ``max_concurrency`` (the start and the ceiling).
        min_window: fewest consecutive successes before growing by one.
    """

    def __init__(self, maximum: int, min_window: int = MIN_INCREASE_WINDOW) -> None:
        if maximum < 1 or min_window < 1:
            raise ValueError(f"maximum={maximum} and min_window={min_window} must be >= 1")
        self.maximum = maximum
        self.min_window = min_window
        self._limit = maximum
        self._in_flight = 0
        self._successes = 0
        self._generation = 0  # bumped by every decrease
        self._changed = threading.Condition()

    @property
    def limit(self) -> int:
        """Requests allowed in flight now."""
        with self._changed:
            return self._limit

    @contextmanager
    def slot(self) -> Iterator[Slot]:
        """Wait for room under the limit, hold it for one request, then apply its outcome."""
        with self._changed:
            while self._in_flight >= self._limit:
                self._changed.wait()
            self._in_flight += 1
            slot = Slot(self._generation)
        try:
            yield slot
        finally:
            self._release(slot)

    def _release(self, slot: Slot) -> None:
        with self._changed:
            self._in_flight -= 1
            if slot.outcome == "overloaded":
                if slot.generation == self._generation:  # not yet reacted to this congestion
                    before, self._limit = self._limit, max(1, self._limit // 2)
                    self._generation += 1
                    self._successes = 0
                    if self._limit != before:
                        log.info(
                            "server answered 429: requests in flight %d -> %d", before, self._limit
                        )
            elif slot.outcome == "ok":
                self._successes += 1
                if self._limit < self.maximum and self._successes >= max(
                    self._limit, self.min_window
                ):
                    self._limit += 1
                    self._successes = 0
                    log.debug("requests in flight may grow to %d", self._limit)
            self._changed.notify_all()
