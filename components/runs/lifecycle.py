"""The life of one run: its folder, record, owner lock, sentinel, heartbeat and stage processes.

:func:`open_run` is the context every flow run executes in::

    with open_run(project, overrides) as run:       # reaps orphans, starts the sentinel
        ws = create_workspace(project, run.record.workspace, overrides=...)
        for line in run.stage_output("pretrain", ["dvc", "repro", ...], cwd=ws.root):
            ...                                       # the stage's process group is recorded

On a normal exit the record says ``finished``; on an exception ``failed`` (or ``killed`` for
SIGINT/SIGTERM and other non-``Exception`` exits), with stage processes ended first. A
``kill -9`` skips all of this: the sentinel and the next run's :func:`reap_orphans` take
over (see :mod:`components.runs.reaper`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.runs.processes import ProcessIdentity, children_of, exit_reason, terminate
from components.runs.reaper import reap_orphans
from components.runs.record import (
    FAILED,
    FINISHED,
    KILLED,
    TERMINAL,
    OwnerLock,
    RunRecord,
    RunsLayout,
    now_iso,
)
from components.runs.restore import StageRestorer
from components.runs.sentinel import start_sentinel

log = logging.getLogger(__name__)

_ACTIVE: dict[str, ActiveRun] = {}

#: Finished runs whose workspace is kept (records and logs are always kept).
KEEP_WORKSPACES = 10
HEARTBEAT_S = 5.0


class _Heartbeat(threading.Thread):
    """Every few seconds: ``heartbeat_at`` and the direct children of this process."""

    def __init__(self, record: RunRecord) -> None:
        super().__init__(name=f"heartbeat-{record.run_id}", daemon=True)
        self.record = record
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                self.beat()

    def beat(self) -> None:
        known = {c.pid for c in self.record.children()}
        sentinel = self.record.data.get("sentinel_pid")
        for pid in children_of(os.getpid()):
            if pid not in known and pid != sentinel:
                self.record.add_child(ProcessIdentity.of(pid, what="child process"))
        self.record.update(heartbeat_at=now_iso())


@dataclass
class ActiveRun:
    """A run in progress, as the flow sees it."""

    layout: RunsLayout
    record: RunRecord
    #: Exit code of the last :meth:`stage_output` command that ran to its end.
    last_returncode: int | None = None
    _restorer: StageRestorer | None = None

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def step(self, name: str) -> None:
        """Record the step the run is in (what a cleanup reports as ``failure.stage``)."""
        self.record.update(step=name)

    def stage_output(
        self, what: str, command: Sequence[str], *, cwd: Path, env: Mapping[str, str]
    ) -> Iterator[str]:
        """Run ``command`` as the leader of a new process group and yield its output lines.

        The group is recorded before the first line is read, so nothing can outlive the
        run unseen. Leaving the loop early, or any exception (SIGINT/SIGTERM included),
        ends the whole group. The exit code is :attr:`last_returncode` after the loop.
        """
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            errors="replace",
            process_group=0,
        )
        identity = ProcessIdentity.of(process.pid, group=True, what=what)
        self.record.add_child(identity)
        finished = False
        try:
            assert process.stdout is not None
            for raw in process.stdout:
                yield raw.rstrip("\n")
            self.last_returncode = process.wait()
            finished = True
        finally:
            if not finished:
                terminate([identity])
                process.wait()
            if process.stdout is not None:
                process.stdout.close()

    def restore_stage(self, workspace: Path, name: str) -> str | None:
        """Restore stage ``name`` from DVC's cache in this process when nothing changed
        (``unchanged`` / ``cached``); ``None``: it has to run (see :mod:`.restore`)."""
        if self._restorer is None:
            self._restorer = StageRestorer(workspace)
        return self._restorer.restore(name)

    def close(self) -> None:
        if self._restorer is not None:
            self._restorer.close()
            self._restorer = None

    def end_children(self) -> None:
        """End every stage process group still running (used on failure)."""
        groups = [c for c in self.record.children() if c.group]
        terminate(groups)


def active_run(run_id: str) -> ActiveRun:
    """The run ``run_id`` open in this process (tasks receive ids, not live objects)."""
    try:
        return _ACTIVE[run_id]
    except KeyError:
        raise LookupError(f"run {run_id} is not open in this process") from None


def _prune(layout: RunsLayout, keep: int) -> None:
    """Delete the workspaces of all but the newest ``keep`` ended runs."""
    ended = []
    for run_id in layout.run_ids():
        try:
            record = RunRecord.load(layout.run_dir(run_id))
        except (OSError, ValueError):
            continue
        if record.status in TERMINAL and record.workspace.exists():
            ended.append(record)
    for record in ended[: max(0, len(ended) - keep)]:
        shutil.rmtree(record.workspace, ignore_errors=True)


@contextlib.contextmanager
def open_run(
    project: str | Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    keep_workspaces: int = KEEP_WORKSPACES,
) -> Iterator[ActiveRun]:
    """Create the run folder and keep its record true until the block ends.

    Args:
        project: the checkout the run belongs to.
        overrides: the run's dotted params overrides (recorded; secrets never appear in
            params.yaml, only variable names).
        keep_workspaces: ended runs whose workspace folder is kept.
    """
    layout = RunsLayout(Path(project))
    for orphan in reap_orphans(layout):
        log.warning("run %s had died without finishing: marked failed and cleaned up", orphan)
    record = RunRecord.create(layout, overrides=dict(overrides or {}))
    owner = OwnerLock(record.owner_lock)
    owner.acquire()
    heartbeat = _Heartbeat(record)
    run = ActiveRun(layout, record)
    _ACTIVE[run.run_id] = run
    try:
        start_sentinel(record)
        heartbeat.beat()  # now: Prefect's temporary API is already a child of this process
        heartbeat.start()
        yield run
    except BaseException as exc:
        run.end_children()
        status = FAILED if isinstance(exc, Exception) else KILLED
        record.update(status=status, message=exit_reason(exc), finished_at=now_iso())
        exc.add_note(f"run {record.run_id} {status}; full log: {record.log_path}")
        raise
    else:
        record.update(status=FINISHED, finished_at=now_iso(), message=None)
    finally:
        run.close()
        _ACTIVE.pop(run.run_id, None)
        heartbeat.stopping.set()
        owner.release()
        with contextlib.suppress(OSError):
            _prune(layout, keep_workspaces)
