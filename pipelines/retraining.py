"""The retraining flow: the ``dvc.yaml`` stages as Prefect 3 tasks in an isolated workspace.

``retraining_flow(dataset=..., provider=..., overrides=...)``:

1. validates ``params.yaml`` + overrides (one typed root: a typo fails here, naming the key);
2. opens a run (``components.runs``): ``.matryoshka/runs/<run id>/`` with its record, an
   owner lock, a sentinel that cleans up if this process dies, and a full log;
3. snapshots the project into the run's workspace with the overrides written into the
   workspace's own ``params.yaml`` and DVC pointed at the checkout's cache: the checkout is
   never written, and concurrent runs never see each other's params;
4. starts an MLflow run (``RUNNING``) with the effective params;
5. runs each stage as its own task (``dvc repro --single-item <stage>`` in the workspace,
   in a process group of its own): DVC restores unchanged stages from the shared cache
   (state ``Cached``); the supervised stage without training labels ends ``Skipped``;
6. logs metrics, curves, artifacts, the dataset and lineage, registers the adaptor as
   ``@challenger``, and only then marks the MLflow run ``FINISHED``;
7. runs the promotion gate on the new version (``registry.run_mode``: ``disabled``,
   ``dry_run``, ``enabled`` promotes on pass, ``approval`` pauses the flow on pass until a
   person approves or rejects in the Prefect UI, :mod:`pipelines.approval`);
8. publishes Prefect artifacts: ``retraining-report`` (Markdown: per-dimension table, the
   gate's verdict, MLflow links), ``retraining-metrics`` (table) and, while the embed stage
   runs, ``embedding-progress`` (:mod:`pipelines.artifacts`);
9. with ``apply=True``, copies the outputs and ``dvc.lock`` into the checkout
   (:func:`components.runs.apply_run`), the only step that writes there.

A failing stage stops the flow: the error (for validation, the summary naming file, row and
field) is in the raised :class:`StageFailedError`, the MLflow run is ``FAILED``, nothing is
registered. SIGINT/SIGTERM end the stage's process group and mark the run ``KILLED``.
The gate runs after the MLflow run is ``FINISHED``: a gate error fails the flow but leaves
the registered version as ``@challenger`` (``validation_status=pending``).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed

from components.cli import EXIT_TEMPFAIL
from components.layout import HISTORY_FILE, SUMMARY_FILE, RunLayout
from components.params import (
    PARAMS_FILE,
    ParamsError,
    PipelineParams,
    load_params,
    read_params_file,
)
from components.runs import ActiveRun, active_run, apply_run, create_workspace, open_run
from components.stages.graph import StageSpec, load_stage_graph, stage_outputs
from components.tracking import PipelineRun, display_uri, flatten_params, read_json
from components.tracking.flow_summary import (
    gate_verdict,
    metric_rows,
    mlflow_links,
    run_report_markdown,
)
from components.tracking.params import redact_overrides
from pipelines.artifacts import EmbeddingProgress, publish_metrics, publish_report
from pipelines.settings import REPO_ROOT

FLOW_NAME = "matryoshka-retraining"
DVC_FILE = "dvc.yaml"
#: The stage whose output lines feed the ``embedding-progress`` artifact.
EMBED_STAGE = "embed"
#: Prefect task options per stage name; the extraction stage retries (APIs, rate limits).
STAGE_TASK_OPTIONS: dict[str, dict[str, Any]] = {
    EMBED_STAGE: {
        "retries": 2,
        "retry_delay_seconds": 10,
        "retry_condition_fn": lambda task, run, state: retry_worthwhile(state),
    },
}
# What `dvc repro` prints for a stage it did not run (unchanged, or found in its run cache).
_DVC_SKIP_MARKERS = ("didn't change, skipping", "is cached - skipping run")
# DVC exits 255 for any failed stage; the stage command's own exit code is in its message.
_DVC_EXIT = re.compile(r"exited with (-?\d+)")
# A Python log record printed by a stage command (components.cli's format).
_STAGE_LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
    r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: (?P<message>.*)$"
)
_TAIL_LINES = 30
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class StageFailedError(RuntimeError):
    """A stage's command failed; the message carries its report (e.g. the validation
    summary naming file, row and field)."""

    def __init__(self, stage: str, message: str, exit_code: int | None = None) -> None:
        self.stage = stage
        self.exit_code = exit_code
        super().__init__(message)


def retry_worthwhile(state: Any) -> bool:
    """Whether a failed stage task should be retried: only when the stage exited with
    ``EXIT_TEMPFAIL`` (a provider's transient errors outlasted its own retries). Bad data,
    bad settings and code errors fail the same way every time: retrying only delays the
    message."""
    error = state.result(raise_on_failure=False)
    return not isinstance(error, StageFailedError) or error.exit_code == EXIT_TEMPFAIL


@dataclass(frozen=True)
class RetrainingResult:
    """What a finished flow returns; ``str()`` is the report the CLI prints.

    Attributes:
        run: the pipeline run id (``.matryoshka/runs/<run>``).
        run_id / experiment_id / tracking_uri: the MLflow run.
        stages: stage → ``ran`` | ``cached`` (unchanged, from DVC's cache) | ``skipped``.
        table: the per-dimension nDCG@10 table (Markdown).
        ui: the command that opens the MLflow UI and the run's address.
        workspace: where the stages ran (outputs under ``runs/`` there).
        registered: ``{"model_name", "version", "new"}`` or None (registry off).
        applied: the outputs were copied into the checkout.
        gate: what the promotion gate did (``PromotionOutcome.to_dict()``: ``action``
            ``disabled`` | ``dry_run`` | ``promoted`` | ``rejected`` | ``noop`` |
            ``approved`` | ``timed_out``, ``champion_before`` / ``champion_after``,
            ``message``); None when nothing was registered.
    """

    run: str
    run_id: str
    experiment_id: str
    tracking_uri: str
    stages: dict[str, str]
    table: str
    ui: str
    workspace: str
    registered: dict[str, Any] | None = None
    applied: bool = False
    gate: dict[str, Any] | None = None

    def __str__(self) -> str:
        lines = [self.table, "", "stages: " + ", ".join(f"{k} {v}" for k, v in self.stages.items())]
        if self.registered and self.registered.get("skipped"):
            lines.append(f"registry: {self.registered['skipped']}")
        elif self.registered:
            new = "new version" if self.registered.get("new") else "unchanged, not re-registered"
            lines.append(
                f"registry: {self.registered['model_name']} version "
                f"{self.registered['version']} ({new})"
            )
        if self.gate:
            lines.append(f"gate: {gate_verdict(self.gate)}")
        lines.append(f"run {self.run}: outputs in {RunLayout().under(self.workspace).root}")
        lines.append(
            "  applied to the checkout (runs/, dvc.lock)"
            if self.applied
            else f"  copy them into the checkout with: matryoshka apply {self.run}"
        )
        lines += ["", f"MLflow run {self.run_id}", self.ui]
        return "\n".join(lines)


# --------------------------------------------------------------------------- helpers
def effective_overrides(
    dataset: str | None, provider: str | None, overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The dotted-key overrides of a run: ``overrides`` plus the two shortcuts."""
    merged = dict(overrides or {})
    if dataset is not None:
        merged["dataset.path"] = str(dataset)
    if provider is not None:
        merged["embedding.provider"] = provider
    return merged


def _tool(name: str) -> str:
    """The executable ``name`` from this interpreter's environment, else from PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def stage_environment(workspace: Path) -> dict[str, str]:
    """The environment of stage commands: this venv's tools first on PATH, the
    workspace's code first on the import path (the snapshot, not the live checkout),
    output unbuffered so the task log streams."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(workspace), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _stage_report(stage: StageSpec, root: Path, lines: list[str]) -> str:
    """What to show for a failed stage: its ``summary.txt`` (validation) or output tail."""
    for out in stage.outs:
        summary = root / out / SUMMARY_FILE
        if summary.is_file():
            text = summary.read_text(encoding="utf-8").strip()
            if text:
                return text
    useful = [
        line
        for line in lines
        if line.strip() and not line.startswith(("ERROR: failed to reproduce", "Running stage"))
    ]
    return "\n".join(useful[-_TAIL_LINES:])


def _stage_exit_code(lines: list[str], dvc_code: int) -> int:
    """The stage command's exit code from DVC's message (DVC itself exits 255)."""
    for line in reversed(lines):
        match = _DVC_EXIT.search(line)
        if match:
            return int(match[1])
    return dvc_code


def _skip_reason(stage: StageSpec, root: Path) -> str | None:
    """The reason a stage recorded for skipping itself (``"skipped": true`` in its
    ``history.json``), else None."""
    for out in stage.outs:
        candidate = root / out
        history = candidate if candidate.name == HISTORY_FILE else candidate / HISTORY_FILE
        data = read_json(history) if history.is_file() else None
        if data and data.get("skipped"):
            return str(data.get("reason") or "the stage skipped itself")
    return None


def _log_line(logger: Any, line: str) -> None:
    """Forward one line of stage output at the level it announces (DVC's ``ERROR:``, a
    Python log record's `` WARNING ``), INFO otherwise. A stage's own log prefix
    (time, level, logger) is dropped: the flow's logger adds its own."""
    record = _STAGE_LOG_LINE.match(line)
    if record is not None:
        level = logging.getLevelName(record["level"])
        logger.log(level if isinstance(level, int) else logging.INFO, record["message"])
        return
    upper = line.upper()
    if upper.startswith(("ERROR", "CRITICAL", "TRACEBACK")) or " ERROR " in upper:
        logger.error(line)
    elif upper.startswith("WARNING") or " WARNING " in upper:
        logger.warning(line)
    else:
        logger.info(line)


@contextmanager
def run_log(path: Path) -> Iterator[None]:
    """Everything logged during the run, tracebacks included, also goes to ``path``."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()  # Prefect's loggers propagate here: one handler, no copies
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


# --------------------------------------------------------------------------- tasks
@task(name="prepare-workspace", cache_policy=NO_CACHE)
def prepare_workspace(run_id: str, project: str, changes: dict[str, Any]) -> str:
    """Snapshot the project into the run's workspace (see :mod:`components.runs.workspace`)."""
    logger = get_run_logger()
    run = active_run(run_id)
    root = Path(project)
    params = load_params(root / PARAMS_FILE, changes)
    outputs = stage_outputs(load_stage_graph(root / DVC_FILE, _raw_params(root, changes)))
    shared = [str(params.embedding.cache_dir), str(params.dataset.path)]
    started = time.perf_counter()
    workspace = create_workspace(
        root, run.record.workspace, overrides=changes, outputs=outputs, shared=shared
    )
    run.record.update(workspace_digest=workspace.digest, links=workspace.links)
    logger.info(
        "run %s: workspace %s (%d files, %.1f s)%s",
        run_id,
        workspace.root,
        len(workspace.manifest),
        time.perf_counter() - started,
        "".join(f"; {rel} -> {target}" for rel, target in workspace.links.items()),
    )
    return str(workspace.root)


@task(name="stage", cache_policy=NO_CACHE)
def run_dvc_stage(stage: StageSpec, workspace: str, run_id: str) -> Any:
    """Run one ``dvc.yaml`` stage with ``dvc repro --single-item`` in the workspace.

    Returns a ``Completed`` state named ``Cached`` (DVC found nothing changed), ``Skipped``
    (the stage skipped itself, e.g. no training labels) or plain ``Completed``.

    Raises:
        StageFailedError: the command failed; the message is its report.
    """
    logger = get_run_logger()
    run = active_run(run_id)
    run.step(stage.name)
    root = Path(workspace)
    logger.info("stage %s started (cmd: %s)", stage.name, stage.cmd)
    started = time.perf_counter()
    progress = EmbeddingProgress() if stage.name == EMBED_STAGE else None
    if run.restore_stage(root, stage.name) is not None:
        if progress is not None:
            progress.finish("embedding restored from the DVC cache")
        return _finished(stage, root, "cached", time.perf_counter() - started, logger)
    lines: list[str] = []
    command = [_tool("dvc"), "repro", "--single-item", stage.name]
    for line in run.stage_output(
        f"stage {stage.name}", command, cwd=root, env=stage_environment(root)
    ):
        if line.strip():
            lines.append(line)
            _log_line(logger, line)
            if progress is not None:
                progress.feed(line)
    seconds = round(time.perf_counter() - started, 2)
    code = run.last_returncode or 0
    if code != 0:
        exit_code = _stage_exit_code(lines, code)
        report = _stage_report(stage, root, lines)
        logger.error("stage %s failed (exit %d) after %.1f s", stage.name, exit_code, seconds)
        raise StageFailedError(
            stage.name, f"stage '{stage.name}' failed (exit {exit_code}):\n{report}", exit_code
        )
    cached = any(marker in line for line in lines for marker in _DVC_SKIP_MARKERS)
    if progress is not None:
        progress.finish("embedding restored from the DVC cache" if cached else "embedding done")
    return _finished(stage, root, "cached" if cached else "ran", seconds, logger)


def _finished(stage: StageSpec, root: Path, status: str, seconds: float, logger: Any) -> Any:
    """The task's result: a state named ``Skipped`` (the stage skipped itself) or
    ``Cached`` (restored from DVC's cache), else a plain result."""
    seconds = round(seconds, 2)
    result = {"stage": stage.name, "status": status, "seconds": seconds}
    reason = _skip_reason(stage, root)
    if reason is not None:
        result["status"] = "skipped"
        result["reason"] = reason
        logger.warning("stage %s skipped: %s", stage.name, reason)
        return Completed(name="Skipped", message=reason, data=result)
    if status == "cached":
        logger.info("stage %s unchanged: restored from the DVC cache (%.1f s)", stage.name, seconds)
        return Completed(name="Cached", message="unchanged (DVC cache)", data=result)
    logger.info("stage %s finished in %.1f s", stage.name, seconds)
    return result


@task(name="start-tracking", cache_policy=NO_CACHE)
def start_tracking(
    run_id: str, project: str, params: dict[str, Any], tags: dict[str, str], run_name: str
) -> dict[str, str]:
    """Create the ``RUNNING`` MLflow run, log the effective params, record its ids."""
    logger = get_run_logger()
    run = PipelineRun.start(root=project, params=params, run_name=run_name, tags=tags)
    # The record and the log get the URI with any credentials masked (reconnect_uri).
    active_run(run_id).record.update(
        mlflow={
            "run_id": run.run_id,
            "experiment_id": run.experiment_id,
            "tracking_uri": display_uri(run.tracking_uri),
        }
    )
    flat = run.log_params(params)
    logger.info(
        "MLflow run %s (experiment %s, %s): %d params",
        run.run_id,
        run.experiment_id,
        display_uri(run.tracking_uri),
        len(flat),
    )
    return {
        "run_id": run.run_id,
        "experiment_id": run.experiment_id,
        "tracking_uri": run.tracking_uri,
    }


def _attach(handle: Mapping[str, str]) -> PipelineRun:
    from components.tracking.store import make_client

    return PipelineRun(
        make_client(handle["tracking_uri"]),
        handle["run_id"],
        handle["experiment_id"],
        handle["tracking_uri"],
    )


@task(name="log-to-mlflow", cache_policy=NO_CACHE)
def log_results(
    handle: dict[str, str], project: str, workspace: str, stage_status: dict[str, str]
) -> dict[str, Any]:
    """Metrics, loss curves, artifacts, dataset input and lineage of the finished stages."""
    from components.tracking import log_pipeline_outputs

    logger = get_run_logger()
    checkout, root = Path(project), Path(workspace)
    layout = RunLayout().under(root)
    run = _attach(handle)
    summary = log_pipeline_outputs(run, layout)
    passed = read_json(layout.validation_passed) or {}
    meta = read_json(layout.embeddings_meta) or {}
    fingerprint = passed.get("fingerprint") or meta.get("dataset_fingerprint")
    if fingerprint:
        source = Path(passed.get("path") or meta.get("dataset") or "")
        source = source if source.is_absolute() else (checkout / source).resolve()
        run.log_dataset(
            name=str(passed.get("dataset") or source.name),
            source=source,
            fingerprint=str(fingerprint),
            context="training",
            tags={
                "corpus": str(passed.get("corpus", "")),
                "queries": str(passed.get("queries", "")),
            },
        )
    tags = run.log_lineage(
        checkout, root / "dvc.lock", code_root=REPO_ROOT, dataset_fingerprint=fingerprint
    )
    run.log_tags({f"stage.{name}": status for name, status in stage_status.items()})
    for name in ("dvc.lock", DVC_FILE, str(PARAMS_FILE)):
        run.log_artifact_path(root / name, "lineage")
    run.log_artifact_path(root.parent / "manifest.json", "lineage")
    logger.info(
        "logged %d metrics, training curves %s, %d lineage tags",
        len(summary["metrics"]),
        summary["training_points"],
        len(tags),
    )
    return {"table": summary["table"], "skipped_stages": summary["skipped_stages"], "lineage": tags}


@task(name="register", cache_policy=NO_CACHE)
def register_model(
    handle: dict[str, str],
    run_id: str,
    workspace: str,
    model_name: str,
    lineage_tags: dict[str, str],
) -> dict[str, Any]:
    """Register the run's adaptor as the new ``@challenger``
    (:func:`components.registry.register_pipeline_run`)."""
    from components.registry import register_pipeline_run

    record = active_run(run_id).record

    def remember(previous: str | None) -> None:
        # Recorded before anything is registered: a cleanup after a kill needs both.
        record.update(registry={"model_name": model_name, "previous_challenger": previous})

    registered = register_pipeline_run(
        _attach(handle),
        RunLayout().under(workspace),
        model_name,
        lineage_tags,
        before_register=remember,
    )
    if registered.get("skipped"):  # register_pipeline_run logged why
        return registered
    if registered["new"]:
        record.update(registry={**record.data["registry"], "version": registered["version"]})
    get_run_logger().info(
        "%s version %s (%s)",
        model_name,
        registered["version"],
        "new, alias @challenger" if registered["new"] else "same DVC lineage: not registered again",
    )
    return registered


@task(name="promotion-gate", cache_policy=NO_CACHE)
def gate_version(workspace: str, version: str, tracking_uri: str) -> Any:
    """Gate the registered ``version`` with the run's own params (the workspace's
    ``params.yaml``, overrides included) on the run's evaluation embeddings
    (:func:`components.registry.wiring.gate_from_params`).

    Returns:
        The ``PromotionOutcome``; ``awaiting_approval`` in ``approval`` mode on a pass.
    """
    from components.registry.wiring import gate_from_params

    logger = get_run_logger()
    outcome = gate_from_params(
        load_params(Path(workspace) / PARAMS_FILE),
        workspace,
        version=version,
        tracking_uri=tracking_uri,
    )
    logger.info("gate (%s): %s", outcome.action, gate_verdict(outcome.to_dict()))
    return outcome


def run_gate(workspace: str, version: str, tracking_uri: str, timeout_s: int) -> dict[str, Any]:
    """The gate, then, in ``approval`` mode on a pass, the pause for a person's answer.

    Returns:
        The outcome as a dict (``PromotionOutcome.to_dict()``) with the gate's
        per-dimension summary as ``gate_markdown`` (absent when nothing was compared).
    """
    from components.registry.approval import gate_markdown

    outcome = gate_version(workspace, version, tracking_uri)
    summary = (
        gate_markdown(outcome.decision, outcome.model_name, outcome.version)
        if outcome.decision is not None
        else None
    )
    if outcome.action != "awaiting_approval":
        return {**outcome.to_dict(), "gate_markdown": summary}
    from pipelines.approval import await_approval

    publish_report(
        f"## Waiting for approval\n\n{summary}",
        f"{outcome.model_name} v{outcome.version}: waiting for approval",
    )
    decided = await_approval(
        outcome.model_name,
        str(outcome.version),
        outcome.champion_before,
        summary or "",
        timeout_s,
        tracking_uri,
    )
    return {
        **decided.to_dict(),
        "decision": outcome.decision.to_dict(),
        "message": f"{decided.message}. {outcome.decision.summary()}",
        "gate_markdown": summary,
    }


def publish_artifacts(result: RetrainingResult) -> None:
    """The run's Prefect artifacts: the Markdown report and the metric table."""
    registered = result.registered or {}
    links = mlflow_links(
        result.tracking_uri,
        result.experiment_id,
        result.run_id,
        registered.get("model_name"),
        registered.get("version"),
    )
    if result.gate:
        verdict = gate_verdict(result.gate)
    elif result.registered and result.registered.get("skipped"):
        verdict = f"not registered: {result.registered['skipped']}"
    elif result.registered:
        verdict = "registered; the gate did not run"
    else:
        verdict = "not registered (registry=False): no gate"
    markdown = run_report_markdown(
        run=result.run,
        table=result.table,
        links=links,
        stages=result.stages,
        verdict=verdict,
        gate=(result.gate or {}).get("gate_markdown"),
        registered=result.registered,
    )
    publish_report(markdown, f"run {result.run}: {verdict}"[:500])
    metrics = read_json(RunLayout().under(result.workspace).metrics_json) or {}
    publish_metrics(metric_rows(metrics), f"run {result.run}: evaluation metrics per size m")


def fail_tracking(
    handle: Mapping[str, str], run: ActiveRun, error: BaseException, workspace: str | None
) -> None:
    """Mark the MLflow run ``FAILED`` (``KILLED`` for SIGINT/SIGTERM) with the failing step,
    attach the validation summary when there is one, and delete any model version the run
    registered. Plain code, not a task: it also runs while the flow is being interrupted."""
    tracking = _attach(handle)
    if workspace is not None:
        layout = RunLayout().under(workspace)
        with suppress(Exception):
            tracking.log_artifact_path(layout.validation_summary, "validation")
            tracking.log_artifact_path(layout.validation / "gx_results", "validation/gx_results")
    tracking.fail(error, stage=str(run.record.data.get("step")))
    registry = run.record.data.get("registry") or {}
    if registry.get("model_name"):
        from components.registry.client import registry_session
        from components.registry.register import discard_run_versions

        with suppress(Exception), registry_session(handle["tracking_uri"]) as client:
            discard_run_versions(
                client,
                registry["model_name"],
                handle["run_id"],
                registry.get("previous_challenger"),
            )


def _raw_params(project: Path, changes: Mapping[str, Any]) -> dict[str, Any]:
    """params.yaml with the overrides, as plain data (for ``${...}`` in dvc.yaml)."""
    from components.params import apply_overrides

    return apply_overrides(read_params_file(project / PARAMS_FILE), changes)


def _run_tags(params: PipelineParams, changes: Mapping[str, Any], run_id: str) -> dict[str, str]:
    return {
        "pipeline": FLOW_NAME,
        "pipeline.run": run_id,
        "dataset.path": str(params.dataset.path),
        "provider": params.embedding.provider,
        "model": params.embedding.model or "default",
        "overrides": ", ".join(sorted(changes)) or "none",
    }


# --------------------------------------------------------------------------- flow
@flow(name=FLOW_NAME, log_prints=True)
def retraining_flow(
    dataset: str | None = None,
    provider: str | None = None,
    overrides: dict[str, Any] | None = None,
    root: str | None = None,
    registry: bool = True,
    apply: bool = False,
) -> RetrainingResult:
    """Validate → embed → pretrain → finetune → evaluate (as ``dvc.yaml`` defines them) in
    an isolated workspace, then log the run to MLflow and register the model.

    Args:
        dataset: dataset directory (override of ``dataset.path``); default: params.yaml's.
        provider: embedding provider (override of ``embedding.provider``: ``local``,
            ``openai``, ``google``); default: params.yaml's.
        overrides: dotted ``params.yaml`` keys → values, e.g.
            ``{"method.train.unsupervised.max_iterations": 200}``.
        root: the project directory holding ``dvc.yaml`` and ``params.yaml`` (default: the
            working directory). It is read, never written (unless ``apply``).
        registry: after a successful run, register the adaptor as ``@challenger`` and run
            the gate (``registry.run_mode``; ``approval`` pauses the run on a pass).
        apply: copy the outputs and ``dvc.lock`` into the project when the run succeeds
            (refused with overrides: use ``matryoshka apply RUN --with-params``).

    Returns:
        A :class:`RetrainingResult`; ``print(result)`` shows it.

    Raises:
        ParamsError: invalid params or overrides (nothing started).
        StageFailedError: a stage failed (the flow stopped there; the run is ``FAILED``).
    """
    logger = get_run_logger()
    project = Path(root or os.getcwd()).resolve()
    changes = effective_overrides(dataset, provider, overrides)
    params = load_params(project / PARAMS_FILE, changes)  # a bad key or value fails here
    if apply and changes:
        raise ParamsError(
            "apply=True with overrides would leave params.yaml and the outputs disagreeing; "
            "run without apply, then `matryoshka apply RUN --with-params`"
        )
    effective = _raw_params(project, changes)
    with open_run(project, redact_overrides(changes)) as run, run_log(run.record.log_path):
        logger.info("run %s started in %s (log: %s)", run.run_id, project, run.record.log_path)
        if changes:
            shown = flatten_params(redact_overrides(changes))
            logger.info("overrides: %s", ", ".join(f"{k}={v}" for k, v in shown.items()))
        run.step("prepare-workspace")
        workspace = prepare_workspace(run.run_id, str(project), changes)
        stages = load_stage_graph(Path(workspace) / DVC_FILE, effective)
        logger.info("stages from %s: %s", DVC_FILE, " → ".join(s.name for s in stages))
        run.step("start-tracking")
        tags = _run_tags(params, changes, run.run_id)
        run_name = f"{params.dataset.path.name or 'dataset'}-{params.embedding.provider}"
        handle = start_tracking(run.run_id, str(project), effective, tags, run_name)
        status: dict[str, str] = {}
        try:
            for stage in stages:
                options = {
                    "name": stage.name,
                    "task_run_name": stage.name,
                    **STAGE_TASK_OPTIONS.get(stage.name, {}),
                }
                state = run_dvc_stage.with_options(**options)(
                    stage, workspace, run.run_id, return_state=True
                )
                outcome = state.result()  # raises the stage's error when it failed
                status[stage.name] = outcome["status"]
            run.step("log-to-mlflow")
            logged = log_results(handle, str(project), workspace, status)
            run.step("register")
            registered = (
                register_model(handle, run.run_id, workspace, params.model_name, logged["lineage"])
                if registry
                else None
            )
            run.step("finish")
            _attach(handle).finish()
        except BaseException as exc:
            fail_tracking(handle, run, exc, workspace)
            raise
    applied = False
    if apply:
        applied = bool(apply_run(run.layout, run.run_id, stage_outputs(stages)))
    gate = (
        run_gate(
            workspace,
            registered["version"],
            handle["tracking_uri"],
            params.registry.approval_timeout_s,
        )
        if registered is not None and registered["version"] is not None
        else None
    )
    result = RetrainingResult(
        run=run.run_id,
        run_id=handle["run_id"],
        experiment_id=handle["experiment_id"],
        tracking_uri=handle["tracking_uri"],
        stages=status,
        table=logged["table"],
        ui=_attach(handle).ui_hint(),
        workspace=workspace,
        registered=registered,
        applied=applied,
        gate=gate,
    )
    publish_artifacts(result)
    logger.info("retraining finished: run %s, MLflow run %s", run.run_id, handle["run_id"])
    return result
