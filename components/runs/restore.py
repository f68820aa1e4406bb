"""Restoring an unchanged stage from DVC's cache without starting a DVC process.

A run's workspace starts without outputs; for every stage whose dependencies and params are
unchanged, DVC's run-cache holds its outputs. ``dvc repro --single-item <stage>`` restores
them too, but each call pays DVC's start-up (about a second here), five times per warm run.
:class:`StageRestorer` opens the workspace's DVC repository once, in this process, and asks
DVC itself (``stage_cache.restore(dry=True)``) whether a stage can be restored. Only then does
it reproduce the stage in-process, which DVC does by checking out the cached outputs and
writing ``dvc.lock``, never by running the command: a stage that has to run still goes
through ``dvc repro`` in a process group of its own (:meth:`ActiveRun.stage_output`).

Example:
    >>> with StageRestorer("runs/x/workspace") as restorer:  # doctest: +SKIP
    ...     restorer.restore("validate")
    'cached'
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

log = logging.getLogger(__name__)

Restored = Literal["unchanged", "cached"]


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _route_dvc_logging() -> None:
    """DVC's own console handlers off: ``import dvc`` binds them to the streams of that
    moment, and in this process DVC's lines belong in the flow's log like any other."""
    from dvc.logger import LoggerHandler

    for name in ("dvc", "dvc_objects", "dvc_data"):
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if isinstance(h, LoggerHandler)]:
            logger.removeHandler(handler)


class StageRestorer:
    """DVC's repository of one workspace, opened once for cheap restores.

    Args:
        workspace: the run's workspace (a DVC project).
    """

    def __init__(self, workspace: str | Path) -> None:
        from dvc.repo import Repo

        _route_dvc_logging()
        self.root = Path(workspace).resolve()
        with contextlib.chdir(self.root):
            self.repo: Any = Repo(str(self.root))

    def restore(self, name: str) -> Restored | None:
        """``unchanged`` (outputs already match ``dvc.lock``), ``cached`` (restored from the
        run-cache, ``dvc.lock`` updated), or ``None``: the stage has to run.

        Any DVC error also answers ``None``: the stage then runs through ``dvc repro``,
        which reports the problem the usual way.
        """
        # DVC resolves some dependency paths against the working directory (measured: from
        # outside the workspace the run-cache is never found); the flow's threads use
        # absolute paths only.
        with contextlib.chdir(self.root):
            return self._restore(name)

    def _restore(self, name: str) -> Restored | None:
        from dvc.exceptions import DvcException
        from dvc.stage.cache import RunCacheNotFoundError

        try:
            with self.repo.lock:
                (stage,) = self.repo.stage.collect(name)
                if not stage.changed():
                    return "unchanged"
                stage.save_deps()  # the run-cache key is made of the deps' hashes
                with _quiet("dvc"):  # the restore below logs the same line for real
                    self.repo.stage_cache.restore(stage, dry=True)
        except RunCacheNotFoundError:
            return None
        except (DvcException, OSError, ValueError) as exc:
            log.debug("stage %s: no in-process restore (%s)", name, exc)
            return None
        # The run-cache has the outputs: reproduce checks them out and writes dvc.lock
        # (DVC runs a command only when the run-cache misses, which was just ruled out).
        self.repo.reproduce(name, single_item=True)
        self.repo._reset()  # the next stage must see the dvc.lock just written
        return "cached"

    def close(self) -> None:
        self.repo.close()

    def __enter__(self) -> StageRestorer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
