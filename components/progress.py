"""Progress of a training loop a person can watch: a tqdm bar on a terminal, log lines
(which the flow forwards into its log) otherwise.

A training stage runs minutes on a small machine; without a sign of life it looks hung.
:class:`StepProgress` reports the step, the last loss, the held-out score, the best so far
and an ETA at least every ``interval_s`` seconds, plus one line when the loop starts and
one when it ends. The ETA runs to the step where early stopping ends the loop unless the
held-out score improves (never past ``max_iterations``).

Example:
    >>> progress = StepProgress("unsupervised", total=100, patience=20, mode="off")
    >>> progress.evaluated(0, 0.5)
    >>> progress.stop_step
    20
    >>> progress.step(1, 0.25)
    >>> progress.evaluated(10, 0.6)
    >>> progress.stop_step, progress.best, progress.best_step
    (30, 0.6, 10)
    >>> format_duration(3725)
    '1h02m05s'
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Literal

log = logging.getLogger("components.progress")

ProgressMode = Literal["auto", "bar", "log", "off"]
#: Seconds between progress lines: a person watching a log sees it move at least this often.
DEFAULT_INTERVAL_S = 10.0


def format_duration(seconds: float) -> str:
    """``1h02m05s`` / ``3m07s`` for a number of seconds."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def resolve_mode(mode: ProgressMode) -> ProgressMode:
    """``auto`` is a bar when stderr is a terminal, log lines otherwise."""
    if mode == "auto":
        return "bar" if sys.stderr.isatty() else "log"
    return mode


class StepProgress:
    """Reports an optimisation loop: step, loss, held-out score, best so far, ETA.

    Args:
        phase: the stage's name in every line (``unsupervised`` / ``supervised``).
        total: the most steps the loop may run (``max_iterations``).
        patience: steps without a better held-out score after which the loop stops.
        start_patience: steps after which the loop stops when nothing beat step 0.
        score_name: what the held-out score is (e.g. ``heldout_ndcg_at_10``).
        higher_is_better: the direction of the held-out score.
        mode: ``auto``, ``bar``, ``log`` or ``off``.
        interval_s: the most seconds between two log lines (0: a line per call).
    """

    def __init__(
        self,
        phase: str,
        total: int,
        patience: int,
        score_name: str = "heldout",
        higher_is_better: bool = True,
        start_patience: int | None = None,
        mode: ProgressMode = "auto",
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self.phase, self.total, self.patience = phase, total, patience
        self.score_name, self.higher_is_better = score_name, higher_is_better
        self.start_patience = start_patience
        self.mode, self.interval_s = resolve_mode(mode), interval_s
        self.current = 0
        self.loss: float | None = None
        self.score: float | None = None
        self.best: float | None = None
        self.best_step = 0
        self._start = time.monotonic()
        self._last_line = self._start
        self._bar: Any = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=phase, unit="step", dynamic_ncols=True)

    @property
    def stop_step(self) -> int:
        """The step where the loop ends unless the held-out score improves."""
        stop = min(self.total, self.best_step + self.patience)
        if self.best_step == 0 and self.start_patience is not None:
            stop = min(stop, self.start_patience)
        return stop

    def step(self, step: int, loss: float) -> None:
        """Record one finished optimiser step and its loss."""
        if self._bar is not None:
            self._bar.update(step - self.current)
        self.current, self.loss = step, loss
        self._report(force=False)

    def evaluated(self, step: int, score: float) -> None:
        """Record a held-out evaluation at ``step``; the first one (step 0) is announced."""
        self.current, self.score = step, score
        better = self.best is None or (
            score > self.best if self.higher_is_better else score < self.best
        )
        if better:
            self.best, self.best_step = score, step
        if self._bar is not None:
            self._bar.set_postfix(self._postfix(), refresh=False)
        self._report(force=step == 0)

    def close(self, stopped_early: bool) -> None:
        """End the bar, or write the last line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.mode == "log":
            reason = "stopped early" if stopped_early else "reached max_iterations"
            log.info("%s (%s)", self.line(finished=True), reason)

    def line(self, finished: bool = False) -> str:
        """``phase: step s/total, loss, held-out, best at step, rate, ETA``."""
        elapsed = max(1e-9, time.monotonic() - self._start)
        rate = self.current / elapsed
        parts = [f"{self.phase}: step {self.current}/{self.total}"]
        parts += [f"{key} {value}" for key, value in self._postfix().items()]
        if self.current:
            parts.append(f"{rate:.1f} steps/s")
        if finished:
            parts.append(f"done in {format_duration(elapsed)}")
        elif rate > 0:
            parts.append(
                f"ETA {format_duration((self.stop_step - self.current) / rate)} "
                f"(stops at step {self.stop_step} unless held-out improves)"
            )
        return ", ".join(parts)

    def _postfix(self) -> dict[str, str]:
        values = {}
        if self.loss is not None:
            values["loss"] = f"{self.loss:.4f}"
        if self.score is not None:
            values[self.score_name] = f"{self.score:.4f}"
        if self.best is not None:
            values["best"] = f"{self.best:.4f} at step {self.best_step}"
        return values

    def _report(self, force: bool) -> None:
        if self.mode != "log":
            return
        now = time.monotonic()
        if force or now - self._last_line >= self.interval_s:
            self._last_line = now
            log.info("%s", self.line())
