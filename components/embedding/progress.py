"""Progress reporting: a tqdm bar (texts/s, ETA) on a terminal, plain log lines otherwise.

Example:
    >>> with Progress(total=10, desc="corpus", mode="off") as progress:
    ...     progress.update(10)
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import NamedTuple

from components.progress import DEFAULT_INTERVAL_S, ProgressMode, format_duration, resolve_mode

log = logging.getLogger("components.embedding.progress")

# What Progress.line() writes (also found inside a longer log line, e.g. a stage's output).
_LINE = re.compile(r"(?P<desc>[\w.-]+): (?P<done>\d+)/(?P<total>\d+) texts \(")


class ProgressPoint(NamedTuple):
    """One parsed progress line: ``desc`` (``corpus`` / ``queries``), texts done, total."""

    desc: str
    done: int
    total: int


def parse_progress_line(line: str) -> ProgressPoint | None:
    """The progress a :meth:`Progress.line` (or a log line holding one) reports, else None.

    Example:
        >>> parse_progress_line("INFO x: corpus: 10/40 texts (25%), 3.1 texts/s, ETA 0m09s")
        ProgressPoint(desc='corpus', done=10, total=40)
        >>> parse_progress_line("stage embed started") is None
        True
    """
    match = _LINE.search(line)
    if match is None:
        return None
    return ProgressPoint(match["desc"], int(match["done"]), int(match["total"]))


class Progress:
    """Counts texts done; thread-safe.

    Args:
        total: texts to do.
        desc: label (e.g. ``corpus``).
        mode: ``auto`` (bar if stderr is a terminal, else log lines), ``bar``, ``log``, ``off``.
        interval_s: seconds between log lines.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        mode: ProgressMode = "auto",
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        mode = resolve_mode(mode)
        self.total, self.desc, self.mode, self.interval_s = total, desc, mode, interval_s
        self.done = 0
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last_log = self._start
        self._logged_done = -1
        self._bar = None
        if mode == "bar" and total:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="text", dynamic_ncols=True, smoothing=0.1)

    def update(self, n: int) -> None:
        """Record ``n`` more texts done."""
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(n)
            elif self.mode == "log":
                now = time.monotonic()
                if now - self._last_log >= self.interval_s:
                    self._last_log = now
                    self._logged_done = self.done
                    log.info("%s", self.line())

    def line(self) -> str:
        """``desc: done/total (pct), rate texts/s, ETA``."""
        elapsed = max(1e-9, time.monotonic() - self._start)
        rate = self.done / elapsed
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta_text = format_duration(eta) if eta != float("inf") else "?"
        return (
            f"{self.desc}: {self.done}/{self.total} texts ({pct:.0f}%), "
            f"{rate:.1f} texts/s, ETA {eta_text}"
        )

    def close(self) -> None:
        """Finish the bar or write the final log line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "log" and self.total and self._logged_done != self.done:
            self._logged_done = self.done
            log.info("%s", self.line())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
