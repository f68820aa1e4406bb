"""Cleaning up after a run whose flow process died without finishing (``kill -9``, OOM).

Who calls it: the run's sentinel (:mod:`components.runs.sentinel`) the moment the flow
process dies, and every later run at its start (:func:`reap_orphans`), in case the sentinel
died too. Both take the run's ``owner.lock`` first, so the two never clean up at once and a
live run is never touched: the lock is free only once its owner is gone.

Cleanup of a dead run:

1. end the processes it started (stage process groups, the temporary Prefect server),
   checked by PID *and* start time so a reused PID is never signalled;
2. mark its MLflow run ``FAILED`` with the reason (``failure.stage`` = the step it was in),
   unless the run had already reached ``FINISHED``;
3. delete any model version it registered but never finished, and point ``@challenger``
   back where it was;
4. set the record's status (``failed``, or ``finished`` when MLflow says it finished).
"""

from __future__ import annotations

import logging
from typing import Any

from components.runs.processes import terminate
from components.runs.record import FAILED, FINISHED, RUNNING, RunRecord, RunsLayout, hold, now_iso

log = logging.getLogger(__name__)


def death_reason(record: RunRecord) -> str:
    owner = record.data.get("owner") or {}
    return (
        f"the flow process (pid {owner.get('pid')}) ended without finishing during step "
        f"'{record.data.get('step')}' (killed, out of memory or crashed); cleaned up by "
        "the next run or the run's sentinel"
    )


def _finish_tracking(record: RunRecord, reason: str) -> str | None:
    """Mark the MLflow run FAILED unless it finished; returns its final status."""
    tracking = record.data.get("mlflow") or {}
    if not tracking.get("run_id"):
        return None
    from components.tracking.run import PipelineRun
    from components.tracking.store import make_client, reconnect_uri

    uri = reconnect_uri(tracking["tracking_uri"])  # recorded with credentials masked
    run = PipelineRun(make_client(uri), tracking["run_id"], tracking["experiment_id"], uri)
    status = run.status
    if status == "RUNNING":
        run.fail(reason, stage=str(record.data.get("step") or "unknown"))
        status = run.status
    return status


def _discard_versions(record: RunRecord) -> list[str]:
    registry: dict[str, Any] = record.data.get("registry") or {}
    tracking = record.data.get("mlflow") or {}
    if not registry.get("model_name") or not tracking.get("run_id"):
        return []
    from components.registry.client import registry_session
    from components.registry.register import discard_run_versions
    from components.tracking.store import reconnect_uri

    with registry_session(reconnect_uri(tracking["tracking_uri"])) as client:
        return discard_run_versions(
            client,
            registry["model_name"],
            tracking["run_id"],
            registry.get("previous_challenger"),
        )


def reap(record: RunRecord, reason: str | None = None) -> str:
    """Clean up a dead run (caller holds its ``owner.lock``); returns its final status."""
    reason = reason or death_reason(record)
    skip = {int(p) for p in [record.data.get("sentinel_pid")] if p}
    ended = terminate([c for c in record.children() if c.pid not in skip])
    if ended:
        log.warning(
            "run %s: ended %s", record.run_id, ", ".join(f"{c.what} (pid {c.pid})" for c in ended)
        )
    status = FAILED
    try:
        mlflow_status = _finish_tracking(record, reason)
        if mlflow_status == "FINISHED":
            status = FINISHED
        else:
            _discard_versions(record)
    except Exception as exc:  # noqa: BLE001 - the record must still say what happened
        log.warning("run %s: MLflow cleanup failed (%s)", record.run_id, exc)
        reason += f"; MLflow cleanup failed: {exc}"
    record.update(
        status=status,
        message=None if status == FINISHED else reason,
        finished_at=now_iso(),
        reaped_at=now_iso(),
    )
    log.warning("run %s marked %s: %s", record.run_id, status, reason)
    return status


def reap_orphans(layout: RunsLayout) -> list[str]:
    """Clean up every run of ``layout`` still marked running whose owner is gone.

    Returns:
        The run ids cleaned up.
    """
    reaped = []
    for run_id in layout.run_ids():
        directory = layout.run_dir(run_id)
        try:
            record = RunRecord.load(directory)
        except (OSError, ValueError):
            continue
        if record.status != RUNNING:
            continue
        with hold(record.owner_lock, blocking=False) as free:
            if not free:
                continue  # its owner is alive (or its sentinel is cleaning up right now)
            record = RunRecord.load(directory)  # the sentinel may have just finished
            if record.status == RUNNING:
                reap(record)
                reaped.append(run_id)
    return reaped
