"""One MLflow run per pipeline run, logged with ``MlflowClient`` (no global active run).

:class:`PipelineRun` wraps a run id and a client: params (flattened ``params.yaml``),
per-dimension metrics, training curves, artifacts, the dataset input and lineage tags, and
the final status. A run is created ``RUNNING`` when the pipeline starts and ends either
``FINISHED`` (everything logged) or ``FAILED`` with the failing stage and message as tags
and ``failure.txt`` as an artifact, so a failed pipeline never looks like a good run.

Example:
    >>> run = PipelineRun.start(root=".", params=params, run_name="scifact-local")
    ... # doctest: +SKIP
    >>> run.log_evaluation(json.load(open("runs/evaluation/metrics.json")))
    ... # doctest: +SKIP
    >>> run.finish()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.tracking.lineage import LINEAGE_ARTIFACT, collect_lineage
from components.tracking.naming import evaluation_metrics, training_metrics
from components.tracking.params import flatten_params, mask_credentials
from components.tracking.store import (
    artifact_root_for,
    ensure_experiment,
    make_client,
    mlflow_settings,
    resolve_tracking_uri,
    ui_command,
)

FAILURE_STAGE_TAG = "failure.stage"
FAILURE_MESSAGE_TAG = "failure.message"
DATASET_FINGERPRINT_TAG = "dataset.fingerprint"
_MAX_TAG_CHARS = 5000
#: Points per loss curve logged as MLflow metrics (25k points of one stage take ~6 s).
MAX_CURVE_POINTS = 500


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class PipelineRun:
    """A handle on one MLflow run of the pipeline.

    Attributes:
        client: the ``MlflowClient`` bound to :attr:`tracking_uri`.
        run_id: the MLflow run id.
        experiment_id: its experiment.
        tracking_uri: where it is stored.
    """

    client: Any
    run_id: str
    experiment_id: str
    tracking_uri: str

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def start(
        cls,
        *,
        root: str | Path,
        params: Mapping[str, Any],
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        experiment_name: str | None = None,
    ) -> PipelineRun:
        """Create a ``RUNNING`` run in the experiment named by ``params['mlflow']``.

        Args:
            root: the project root; the default store lives in ``<root>/mlflow/``.
            params: the effective params (``mlflow:`` section: experiment name, tracking
                URI; ``MLFLOW_TRACKING_URI`` in the environment wins).
            run_name: display name in the UI.
            tags: initial tags (provider, dataset path, ...).
            experiment_name: overrides the params' experiment name.
        """
        settings = mlflow_settings(dict(params))
        uri = resolve_tracking_uri(root, settings["tracking_uri"])
        client = make_client(uri)
        artifact_root = artifact_root_for(uri)
        experiment_id = ensure_experiment(
            client, experiment_name or settings["experiment_name"], artifact_root
        )
        run = client.create_run(
            experiment_id,
            start_time=_now_ms(),
            tags={k: str(v) for k, v in (tags or {}).items()},
            run_name=run_name,
        )
        return cls(client, run.info.run_id, experiment_id, uri)

    @property
    def status(self) -> str:
        """The run's current status (``RUNNING``, ``FINISHED``, ``FAILED``, ``KILLED``)."""
        return str(self.client.get_run(self.run_id).info.status)

    def finish(self) -> None:
        """Mark the run ``FINISHED``: call only when every stage and all logging succeeded."""
        self.client.set_terminated(self.run_id, status="FINISHED", end_time=_now_ms())

    def fail(self, error: BaseException | str, stage: str | None = None) -> None:
        """Mark the run ``FAILED`` (``KILLED`` for SIGINT/SIGTERM) with the reason attached.

        Sets ``failure.stage`` / ``failure.message`` tags and logs ``failure.txt`` (message
        and traceback). Never raises: a broken store must not hide the original error.
        """
        from components.runs.processes import exit_reason

        message = mask_credentials(exit_reason(error))
        # SIGINT/SIGTERM arrive as BaseExceptions that are not Exceptions
        # (KeyboardInterrupt, Prefect's TerminationSignal, SystemExit).
        status = "FAILED" if isinstance(error, Exception | str) else "KILLED"
        details = message
        if isinstance(error, BaseException):
            details += "\n\n" + "".join(traceback.format_exception(error))
        with contextlib.suppress(Exception):  # keep the original error visible
            tags = {FAILURE_MESSAGE_TAG: message[:_MAX_TAG_CHARS] or type(error).__name__}
            if stage:
                tags[FAILURE_STAGE_TAG] = stage
            self.log_tags(tags)
            self.client.log_text(self.run_id, details, "failure.txt")
        with contextlib.suppress(Exception):
            self.client.set_terminated(self.run_id, status=status, end_time=_now_ms())

    def ui_hint(self) -> str:
        """Where to look: the UI command and the run's page."""
        return (
            f"MLflow UI: {ui_command(self.tracking_uri)}\n"
            f"  then open http://127.0.0.1:5000/#/experiments/{self.experiment_id}/runs/"
            f"{self.run_id}"
        )

    # ------------------------------------------------------------------ logging
    def log_params(self, params: Mapping[str, Any]) -> dict[str, str]:
        """Log the flattened params (``method.train.seed`` style keys); returns them."""
        from mlflow.entities import Param

        flat = flatten_params(params)
        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in flat.items()])
        return flat

    def log_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags (values stringified and cut to MLflow's limit)."""
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)[:_MAX_TAG_CHARS]) for k, v in tags.items()]
        if items:
            self.client.log_batch(self.run_id, tags=items)

    def log_points(self, points: Iterable[tuple[str, float, int]]) -> int:
        """Log ``(key, value, step)`` metric points in batches; returns how many."""
        from mlflow.entities import Metric

        stamp = _now_ms()
        metrics = [Metric(key, float(value), stamp, int(step)) for key, value, step in points]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)
        return len(metrics)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> int:
        """Log single-valued metrics at ``step``."""
        return self.log_points((k, v, step) for k, v in metrics.items())

    def log_evaluation(self, report: Mapping[str, Any]) -> dict[str, float]:
        """Per-dimension metrics of every method from an evaluation ``metrics.json``."""
        metrics = evaluation_metrics(report)
        self.log_metrics(metrics)
        return metrics

    def log_training(
        self, stage: str, history: Mapping[str, Any], max_points: int | None = MAX_CURVE_POINTS
    ) -> int:
        """Loss curves (at most ``max_points`` per term, evenly strided) and every held-out
        score of one stage's ``history.json``; returns the number of points logged."""
        return self.log_points(training_metrics(stage, history, max_points))

    def log_lineage(
        self,
        root: str | Path,
        dvc_lock: str | Path | None = None,
        code_root: str | Path | None = None,
        dataset_fingerprint: str | None = None,
    ) -> dict[str, str]:
        """Log the run's lineage (:mod:`components.tracking.lineage`): the whole document as
        ``lineage/lineage.json`` and a few searchable tags (``git_commit``, ``git_dirty``,
        ``git_branch``, ``dvc_lock_digest``); returns the tags set.

        Args:
            root: the checkout (its git commit; else ``code_root``'s).
            dvc_lock: the ``dvc.lock`` the stages left (default ``root/dvc.lock``).
            code_root: where the code comes from when ``root`` is not in git.
            dataset_fingerprint: recorded in the document.
        """
        lineage = collect_lineage(
            root, dvc_lock, code_root=code_root, dataset_fingerprint=dataset_fingerprint
        )
        tags = lineage.tags()
        self.log_tags(tags)
        self.log_text(lineage.to_json(), LINEAGE_ARTIFACT)
        return tags

    def log_dataset(
        self,
        *,
        name: str,
        source: str | Path,
        fingerprint: str,
        context: str = "training",
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Record the dataset as an MLflow input (digest = the content fingerprint).

        MLflow caps digests at 36 characters: the digest is the fingerprint's first 32 hex
        digits; the full sha256 is the input tag and the run tag ``dataset.fingerprint``.
        """
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        dataset = MetaDataset(local_dataset_source(source), name=name, digest=fingerprint[:32])
        input_tags = [
            InputTag("mlflow.data.context", context),
            InputTag("fingerprint", fingerprint),
        ]
        input_tags += [InputTag(k, str(v)) for k, v in (tags or {}).items()]
        self.client.log_inputs(
            self.run_id,
            datasets=[DatasetInput(dataset=dataset._to_mlflow_entity(), tags=input_tags)],
        )
        self.log_tags(
            {
                DATASET_FINGERPRINT_TAG: fingerprint,
                "dataset.name": name,
                "dataset.source": str(source),
            }
        )

    def log_artifact_path(self, local: str | Path, artifact_path: str | None = None) -> bool:
        """Log a file or a whole folder under ``artifact_path``; False when it is missing."""
        local = Path(local)
        if local.is_dir():
            self.client.log_artifacts(self.run_id, str(local), artifact_path)
            return True
        if local.is_file():
            self.client.log_artifact(self.run_id, str(local), artifact_path)
            return True
        return False

    def log_text(self, text: str, artifact_file: str) -> None:
        """Log ``text`` as the artifact ``artifact_file``."""
        self.client.log_text(self.run_id, text, artifact_file)


@functools.cache
def _local_source_class() -> type:
    from mlflow.data.dataset_source import DatasetSource

    class LocalPathSource(DatasetSource):
        """A dataset folder on the local filesystem (``source_type`` ``local``)."""

        def __init__(self, uri: str) -> None:
            self._uri = uri

        @property
        def uri(self) -> str:
            return self._uri

        @staticmethod
        def _get_source_type() -> str:
            return "local"

        def load(self, dst_path: str | None = None) -> str:
            return self._uri

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any) -> LocalPathSource:
            return cls(str(raw_source))

        def to_dict(self) -> dict[str, Any]:
            return {"uri": self._uri}

        @classmethod
        def from_dict(cls, source_dict: dict[Any, Any]) -> LocalPathSource:
            return cls(str(source_dict["uri"]))

    return LocalPathSource


def local_dataset_source(uri: str | Path) -> Any:
    """An MLflow ``DatasetSource`` for a local dataset folder (no resolution guessing)."""
    return _local_source_class()(str(uri))
