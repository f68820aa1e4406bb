"""The retraining flow: the ``dvc.yaml`` stages as Prefect 3 tasks, tracked in MLflow.

``retraining_flow(dataset=..., provider=..., overrides=...)``:

1. reads ``dvc.yaml`` (:mod:`pipelines.graph`) for the stages and their order: the flow has
   no stage list of its own, so it cannot drift from ``dvc repro``;
2. starts an MLflow run (``RUNNING``) with the effective params (``params.yaml`` +
   overrides, flattened);
3. runs each stage as its own task (name, state, logs) through
   ``dvc repro --single-item <stage>``: DVC decides what changed, skips and restores
   unchanged stages from its cache, and updates ``dvc.lock``. The extraction stage
   (``embed``) retries. The stage's output is streamed into the task's log. A stage DVC
   skipped ends in the state ``Cached``; the supervised stage without training labels
   ends in ``Skipped`` with a log line saying why;
4. logs metrics, loss curves, artifacts, the dataset input and lineage tags to the run,
   calls the registry (``register`` task), and only then marks the run ``FINISHED``.

A failing stage stops the flow there: the error (for validation, the summary naming file,
row and field) is in the task's log and in the raised :class:`StageFailedError`, later
stages never start, the MLflow run is marked ``FAILED`` and nothing is registered.

Overrides (and the ``dataset``/``provider`` shortcuts, which are the overrides
``dataset.path`` and ``embedding.provider``) are applied by writing them into
``params.yaml`` for the duration of the run (comments kept) and restoring the file
afterwards, so DVC sees exactly the params the stages use and records them in
``dvc.lock``; a later plain ``dvc repro`` re-runs the affected stages with the file's own
values.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed

from components.tracking import (
    PipelineOutputs,
    PipelineRun,
    apply_overrides,
    flatten_params,
    read_json,
)
from pipelines.graph import StageSpec, load_stage_graph
from pipelines.settings import REPO_ROOT

FLOW_NAME = "matryoshka-retraining"
PARAMS_FILE = "params.yaml"
DVC_FILE = "dvc.yaml"
#: Prefect task options per stage name; the extraction stage retries (APIs, rate limits).
STAGE_TASK_OPTIONS: dict[str, dict[str, Any]] = {
    "embed": {"retries": 2, "retry_delay_seconds": 10},
}
# What `dvc repro` prints for a stage it did not run (unchanged, or found in its run cache).
_DVC_SKIP_MARKERS = ("didn't change, skipping", "is cached - skipping run")
_TAIL_LINES = 30


class StageFailedError(RuntimeError):
    """A stage's command failed; the message carries its report (e.g. the validation
    summary naming file, row and field)."""

    def __init__(self, stage: str, message: str) -> None:
        self.stage = stage
        super().__init__(message)


@dataclass(frozen=True)
class RetrainingResult:
    """What a finished flow returns; ``str()`` is the report the CLI prints.

    Attributes:
        run_id / experiment_id / tracking_uri: the MLflow run.
        stages: stage → ``ran`` | ``cached`` (unchanged, from DVC's cache) | ``skipped``.
        table: the per-dimension nDCG@10 table (Markdown).
        ui: the command that opens the MLflow UI and the run's address.
        registered: ``{"model_name", "version", "new"}`` or None (registry off/absent).
    """

    run_id: str
    experiment_id: str
    tracking_uri: str
    stages: dict[str, str]
    table: str
    ui: str
    registered: dict[str, Any] | None = None

    def __str__(self) -> str:
        lines = [self.table, "", "stages: " + ", ".join(f"{k} {v}" for k, v in self.stages.items())]
        if self.registered:
            new = "new version" if self.registered.get("new") else "unchanged, not re-registered"
            lines.append(
                f"registry: {self.registered['model_name']} version "
                f"{self.registered['version']} ({new})"
            )
        lines += ["", f"MLflow run {self.run_id}", self.ui]
        return "\n".join(lines)


class FlowBusyError(RuntimeError):
    """Another retraining flow is running in the same project directory."""


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


def read_params(params_file: Path) -> dict[str, Any]:
    """The parsed params file (``{}`` when absent)."""
    if not params_file.is_file():
        return {}
    raw = yaml.safe_load(params_file.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{params_file}: expected a mapping at the top level")
    return raw


def _write_overridden(params_file: Path, overrides: Mapping[str, Any]) -> None:
    """Rewrite ``params_file`` with ``overrides`` applied, keeping comments and order."""
    from ruamel.yaml import YAML

    editor = YAML()  # round-trip mode: comments, order and quoting survive
    editor.preserve_quotes = True
    editor.width = 4096
    data = editor.load(params_file.read_text(encoding="utf-8")) if params_file.is_file() else None
    if data is None:
        from ruamel.yaml.comments import CommentedMap

        data = CommentedMap()
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            if key not in node or node[key] is None:
                node[key] = {}
            node = node[key]
        node[leaf] = value
    tmp = params_file.with_name(f".{params_file.name}.flow-tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        editor.dump(data, handle)
    os.replace(tmp, params_file)


@contextlib.contextmanager
def params_overridden(params_file: Path, overrides: Mapping[str, Any]) -> Iterator[None]:
    """``params_file`` holds ``overrides`` inside the block; its exact bytes come back after.

    A copy of the original is kept as ``.params.yaml.flow-backup`` while the block runs, so
    a killed run can be undone by hand (``mv .params.yaml.flow-backup params.yaml``).
    """
    if not overrides:
        yield
        return
    original = params_file.read_bytes() if params_file.is_file() else None
    backup = params_file.with_name(f".{params_file.name}.flow-backup")
    if original is not None:
        backup.write_bytes(original)
    try:
        _write_overridden(params_file, overrides)
        yield
    finally:
        if original is None:
            params_file.unlink(missing_ok=True)
        else:
            tmp = params_file.with_name(f".{params_file.name}.flow-restore")
            tmp.write_bytes(original)
            os.replace(tmp, params_file)
            backup.unlink(missing_ok=True)


@contextlib.contextmanager
def project_lock(root: Path) -> Iterator[None]:
    """One retraining flow at a time per project (params.yaml and outputs are shared)."""
    import fcntl

    lock_dir = root / ".dvc" / "tmp"
    lock_dir = lock_dir if lock_dir.is_dir() else root
    path = lock_dir / ".retraining-flow.lock"
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FlowBusyError(
                f"another retraining flow is running in {root} (lock {path}); wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tool(name: str) -> str:
    """The executable ``name`` from this interpreter's environment, else from PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def stage_environment() -> dict[str, str]:
    """The environment of stage commands: this venv's tools first on PATH, output
    unbuffered (so the task log streams), offline and telemetry-free."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _stage_report(stage: StageSpec, root: Path, lines: list[str]) -> str:
    """What to show for a failed stage: its ``summary.txt`` (validation) or output tail."""
    for out in stage.outs:
        summary = root / out / "summary.txt"
        if summary.is_file():
            text = summary.read_text(encoding="utf-8").strip()
            if text:
                return text
    useful = [line for line in lines if line.strip()]
    return "\n".join(useful[-_TAIL_LINES:])


def _skip_reason(stage: StageSpec, root: Path) -> str | None:
    """The reason a stage recorded for skipping itself (``"skipped": true`` in its
    ``history.json``), else None."""
    for out in stage.outs:
        candidate = root / out
        history = candidate if candidate.name == "history.json" else candidate / "history.json"
        data = read_json(history) if history.is_file() else None
        if data and data.get("skipped"):
            return str(data.get("reason") or "the stage skipped itself")
    return None


def _log_line(logger: Any, line: str) -> None:
    """Forward one line of stage output at the level it announces (DVC's ``ERROR:``, a
    Python log record's `` WARNING ``), INFO otherwise."""
    upper = line.upper()
    if upper.startswith(("ERROR", "CRITICAL", "TRACEBACK")) or " ERROR " in upper:
        logger.error(line)
    elif upper.startswith("WARNING") or " WARNING " in upper:
        logger.warning(line)
    else:
        logger.info(line)


# --------------------------------------------------------------------------- tasks
@task(name="stage", cache_policy=NO_CACHE)
def run_dvc_stage(stage: StageSpec, root: str) -> Any:
    """Run one ``dvc.yaml`` stage with ``dvc repro --single-item``, streaming its output.

    Returns a ``Completed`` state named ``Cached`` (DVC found nothing changed), ``Skipped``
    (the stage skipped itself, e.g. no training labels) or plain ``Completed``.

    Raises:
        StageFailedError: the command failed; the message is its report.
    """
    logger = get_run_logger()
    project = Path(root)
    command = [_tool("dvc"), "repro", "--single-item", stage.name]
    logger.info(
        "stage %s: dvc repro --single-item %s  (cmd: %s)", stage.name, stage.name, stage.cmd
    )
    started = time.perf_counter()
    lines: list[str] = []
    with subprocess.Popen(
        command,
        cwd=project,
        env=stage_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        errors="replace",
    ) as process:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip()
            if not line:
                continue
            lines.append(line)
            _log_line(logger, line)
        code = process.wait()
    seconds = round(time.perf_counter() - started, 2)
    if code != 0:
        report = _stage_report(stage, project, lines)
        logger.error(
            "stage %s failed (exit %d) after %.1f s:\n%s", stage.name, code, seconds, report
        )
        raise StageFailedError(stage.name, f"stage '{stage.name}' failed (exit {code}):\n{report}")
    cached = any(marker in line for line in lines for marker in _DVC_SKIP_MARKERS)
    result = {"stage": stage.name, "status": "cached" if cached else "ran", "seconds": seconds}
    reason = _skip_reason(stage, project)
    if reason is not None:
        result["status"] = "skipped"
        result["reason"] = reason
        logger.warning("stage %s skipped: %s", stage.name, reason)
        return Completed(name="Skipped", message=reason, data=result)
    if cached:
        logger.info(
            "stage %s unchanged: outputs restored from the DVC cache (%.1f s)", stage.name, seconds
        )
        return Completed(name="Cached", message="unchanged (DVC cache)", data=result)
    logger.info("stage %s done in %.1f s", stage.name, seconds)
    return result


@task(name="start-tracking", cache_policy=NO_CACHE)
def start_tracking(
    root: str, params: dict[str, Any], tags: dict[str, str], run_name: str
) -> dict[str, str]:
    """Create the ``RUNNING`` MLflow run and log the effective params."""
    logger = get_run_logger()
    run = PipelineRun.start(root=root, params=params, run_name=run_name, tags=tags)
    flat = run.log_params(params)
    logger.info(
        "MLflow run %s (experiment %s, %s): %d params",
        run.run_id,
        run.experiment_id,
        run.tracking_uri,
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
def log_results(handle: dict[str, str], root: str, stage_status: dict[str, str]) -> dict[str, Any]:
    """Metrics, loss curves, artifacts, dataset input and lineage of the finished stages."""
    from components.tracking import log_pipeline_outputs

    logger = get_run_logger()
    project = Path(root)
    run = _attach(handle)
    summary = log_pipeline_outputs(run, PipelineOutputs().under(project))
    passed = read_json(project / "runs" / "validation" / "passed.json") or {}
    meta = read_json(project / "runs" / "embeddings" / "meta.json") or {}
    fingerprint = passed.get("fingerprint") or meta.get("dataset_fingerprint")
    if fingerprint:
        source = Path(passed.get("path") or meta.get("dataset") or "")
        source = source if source.is_absolute() else (project / source).resolve()
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
    tags = run.log_lineage(project, project / "dvc.lock", code_root=REPO_ROOT)
    run.log_tags({f"stage.{name}": status for name, status in stage_status.items()})
    run.log_artifact_path(project / "dvc.lock", "lineage")
    run.log_artifact_path(project / DVC_FILE, "lineage")
    run.log_artifact_path(project / PARAMS_FILE, "lineage")
    logger.info(
        "logged %d metrics, training curves %s, %d lineage tags",
        len(summary["metrics"]),
        summary["training_points"],
        len(tags),
    )
    return {"table": summary["table"], "skipped_stages": summary["skipped_stages"], "lineage": tags}


def registered_model_name(params: Mapping[str, Any]) -> str:
    """``registry.model_name`` > ``mlflow.registered_model_name`` > the default name."""
    from components.tracking import mlflow_settings

    section = params.get("registry") or {}
    return str(section.get("model_name") or mlflow_settings(dict(params))["registered_model_name"])


def _same_lineage_version(client: Any, model_name: str, lineage: Mapping[str, str]) -> str | None:
    """The version of ``model_name`` registered from identical DVC lineage, if any."""
    if not lineage:
        return None
    try:
        versions = client.search_model_versions(f"name='{model_name}'")
    except Exception:  # noqa: BLE001 - no registered model yet
        return None
    wanted = {f"dvc.{key}": value for key, value in lineage.items()}
    for version in versions:
        tags = version.tags or {}
        if all(tags.get(key) == value for key, value in wanted.items()):
            return str(version.version)
    return None


@task(name="register", cache_policy=NO_CACHE)
def register_model(
    handle: dict[str, str], root: str, params: dict[str, Any], lineage_tags: dict[str, str]
) -> dict[str, Any] | None:
    """Register the run's adaptor as the new ``@challenger`` (``components.registry``).

    The adaptor is the finetune stage's when it trained one, else the pretrain stage's.
    When a version with the identical DVC lineage (every hash in ``dvc.lock``) is already
    registered (a re-run where nothing changed), no duplicate version is made.
    """
    logger = get_run_logger()
    try:
        from components.registry import register_run_model
    except ImportError as exc:
        logger.warning("model registry not available (%s): run tracked, nothing registered", exc)
        return None
    project = Path(root)
    finetuned = project / "runs" / "finetune" / "adaptor"
    adaptor_dir = (
        finetuned
        if (finetuned / "adaptor.json").is_file()
        else project / "runs" / "pretrain" / "adaptor"
    )
    method = "adaptor_supervised" if adaptor_dir == finetuned else "adaptor_unsupervised"
    report = read_json(project / "runs" / "evaluation" / "metrics.json") or {}
    meta = read_json(project / "runs" / "embeddings" / "meta.json") or {}
    run = _attach(handle)
    model_name = registered_model_name(params)
    dvc_hashes = {
        key[len("dvc.") :]: value for key, value in lineage_tags.items() if key.startswith("dvc.")
    }
    existing = _same_lineage_version(run.client, model_name, dvc_hashes)
    if existing is not None:
        logger.info(
            "nothing changed since %s version %s (same DVC lineage): no new version registered",
            model_name,
            existing,
        )
        run.log_tags(
            {
                "registry.model_name": model_name,
                "registry.version": existing,
                "registry.new_version": "false",
            }
        )
        return {"model_name": model_name, "version": existing, "new": False}
    metadata = {
        "provider": meta.get("provider"),
        "base_model": meta.get("model"),
        "dataset_fingerprint": meta.get("dataset_fingerprint"),
        "git_commit": lineage_tags.get("git_commit"),
        "dvc_hashes": dvc_hashes,
        "adaptor_method": method,
    }
    version = register_run_model(
        handle["run_id"],
        adaptor_dir,
        report,
        metadata,
        model_name=model_name,
        tracking_uri=handle["tracking_uri"],
    )
    number = str(getattr(version, "version", version))
    run.log_tags(
        {
            "registry.model_name": model_name,
            "registry.version": number,
            "registry.new_version": "true",
        }
    )
    logger.info(
        "registered %s version %s from %s (alias @challenger)",
        model_name,
        number,
        adaptor_dir.relative_to(project),
    )
    return {"model_name": model_name, "version": number, "new": True}


@task(name="mark-run-failed", cache_policy=NO_CACHE)
def mark_failed(handle: dict[str, str], stage: str | None, message: str, root: str) -> None:
    """Mark the MLflow run ``FAILED`` with the failing stage, its message and, when the
    validation stage wrote them, the validation artifacts."""
    run = _attach(handle)
    validation = Path(root) / "runs" / "validation"
    with contextlib.suppress(Exception):
        run.log_artifact_path(validation / "summary.txt", "validation")
        run.log_artifact_path(validation / "gx_results", "validation/gx_results")
    run.fail(message, stage=stage)
    get_run_logger().error("MLflow run %s marked FAILED (stage %s)", run.run_id, stage)


# --------------------------------------------------------------------------- flow
@flow(name=FLOW_NAME, log_prints=True)
def retraining_flow(
    dataset: str | None = None,
    provider: str | None = None,
    overrides: dict[str, Any] | None = None,
    root: str | None = None,
    registry: bool = True,
) -> RetrainingResult:
    """Validate → embed → pretrain → finetune → evaluate (as ``dvc.yaml`` defines them),
    then log the run to MLflow and register the model.

    Args:
        dataset: dataset directory (override of ``dataset.path``); default: params.yaml's.
        provider: embedding provider (override of ``embedding.provider``: ``local``,
            ``openai``, ``google``); default: params.yaml's.
        overrides: dotted ``params.yaml`` keys → values, e.g.
            ``{"method.train.unsupervised.max_iterations": 200}``.
        root: the project directory holding ``dvc.yaml`` and ``params.yaml`` (default: the
            working directory).
        registry: call the model registry after a successful run.

    Returns:
        A :class:`RetrainingResult` (MLflow run, per-stage status, the per-dimension table,
        where to look in the MLflow UI); ``print(result)`` shows all of it.

    Raises:
        StageFailedError: a stage failed (the flow stopped there; the run is ``FAILED``).
    """
    logger = get_run_logger()
    project = Path(root or os.getcwd()).resolve()
    params_file = project / PARAMS_FILE
    changes = effective_overrides(dataset, provider, overrides)
    params = apply_overrides(read_params(params_file), changes)
    stages = load_stage_graph(project / DVC_FILE, params)
    if not (project / ".dvc").is_dir():
        raise FileNotFoundError(
            f"{project} is not a DVC project (no .dvc/): run `dvc init` "
            "there, or pass root= the folder holding dvc.yaml and .dvc/"
        )
    logger.info("stages from %s: %s", DVC_FILE, " → ".join(s.name for s in stages))
    from components.stages import load_stage_params

    load_stage_params(params_file, changes)  # a bad value fails here, before anything runs
    if changes:
        shown = flatten_params(changes)  # secrets redacted, URL credentials masked
        logger.info("overrides: %s", ", ".join(f"{k}={v}" for k, v in shown.items()))
    dataset_path = str((params.get("dataset") or {}).get("path", ""))
    embedding = params.get("embedding") or {}
    tags = {
        "pipeline": FLOW_NAME,
        "dataset.path": dataset_path,
        "provider": str(embedding.get("provider", "")),
        "model": str(embedding.get("model") or "default"),
        "overrides": ", ".join(sorted(changes)) or "none",
    }
    run_name = f"{Path(dataset_path).name or 'dataset'}-{tags['provider'] or 'provider'}"

    with project_lock(project):
        handle = start_tracking(str(project), params, tags, run_name)
        status: dict[str, str] = {}
        current: str | None = None
        try:
            with params_overridden(params_file, changes):
                for stage in stages:
                    current = stage.name
                    options = {
                        "name": stage.name,
                        "task_run_name": stage.name,
                        **STAGE_TASK_OPTIONS.get(stage.name, {}),
                    }
                    state = run_dvc_stage.with_options(**options)(
                        stage, str(project), return_state=True
                    )
                    outcome = state.result()  # raises the stage's error when it failed
                    status[stage.name] = outcome["status"]
            current = "log-to-mlflow"
            logged = log_results(handle, str(project), status)
            current = "register"
            registered = (
                register_model(handle, str(project), params, logged["lineage"])
                if registry
                else None
            )
        except BaseException as exc:
            mark_failed(handle, current, str(exc), str(project))
            raise
        _attach(handle).finish()

    result = RetrainingResult(
        run_id=handle["run_id"],
        experiment_id=handle["experiment_id"],
        tracking_uri=handle["tracking_uri"],
        stages=status,
        table=logged["table"],
        ui=_attach(handle).ui_hint(),
        registered=registered,
    )
    logger.info("retraining finished\n%s", result)
    return result
