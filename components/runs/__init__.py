"""Isolated, recoverable pipeline runs (plain Python; the Prefect flow only calls this).

* :mod:`.workspace`: the snapshot of the project a run's stages execute in;
* :mod:`.record`: the run folder ``.matryoshka/runs/<id>/`` and its ``run.json``;
* :mod:`.lifecycle`: :func:`open_run`, the context a run executes in (owner lock,
  sentinel, heartbeat, stage process groups);
* :mod:`.reaper`, :mod:`.sentinel`: cleanup after a run whose process died;
* :mod:`.apply`: the explicit step that copies a finished run's outputs into the checkout;
* :mod:`.processes`: process identities (PID + start time) and group termination.
"""

from components.runs.apply import ApplyError, apply_run
from components.runs.lifecycle import ActiveRun, active_run, open_run
from components.runs.reaper import reap_orphans
from components.runs.record import (
    FAILED,
    FINISHED,
    KILLED,
    RUNNING,
    RunRecord,
    RunsLayout,
)
from components.runs.workspace import Workspace, WorkspaceError, create_workspace

__all__ = [
    "FAILED",
    "FINISHED",
    "KILLED",
    "RUNNING",
    "ActiveRun",
    "ApplyError",
    "RunRecord",
    "RunsLayout",
    "Workspace",
    "WorkspaceError",
    "active_run",
    "apply_run",
    "create_workspace",
    "open_run",
    "reap_orphans",
]
