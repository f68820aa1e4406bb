"""MLflow tracking for pipeline runs: plain Python, no Prefect.

* :mod:`~components.tracking.naming`: the one metric-naming scheme
  (``{method}/{metric}/dim_{m}``, ``recommended_dim/{method}``, ``train/{stage}/{term}``);
* :mod:`~components.tracking.params`: flattened, secret-free params;
* :mod:`~components.tracking.lineage`: git commit and ``dvc.lock`` hashes in one JSON
  document (``lineage/lineage.json``) plus a few searchable tags;
* :mod:`~components.tracking.store`: tracking URI (``MLFLOW_TRACKING_URI`` > params >
  ``sqlite:///<root>/mlflow/mlflow.db``) and experiments;
* :mod:`~components.tracking.run`: :class:`PipelineRun`, one MLflow run per pipeline run;
* :mod:`~components.tracking.outputs`: logging the ``runs/`` outputs of the stages.

MLflow itself is imported only when a run is created, so importing this package is cheap.
"""

from components.tracking.lineage import (
    DVC_LOCK_DIGEST_TAG,
    LINEAGE_ARTIFACT,
    GitInfo,
    Lineage,
    collect_lineage,
    dvc_lock_digest,
    git_info,
    lineage_uri,
    read_dvc_lock,
    read_run_lineage,
)
from components.tracking.naming import (
    evaluation_metrics,
    metric_key,
    parse_metric_key,
    recommended_dim_key,
    train_metric_key,
    training_metrics,
)
from components.tracking.outputs import format_dim_table, log_pipeline_outputs, read_json
from components.tracking.params import flatten_params, is_secret_key, redact_overrides
from components.tracking.run import (
    DATASET_FINGERPRINT_TAG,
    FAILURE_MESSAGE_TAG,
    FAILURE_STAGE_TAG,
    PipelineRun,
    local_dataset_source,
)
from components.tracking.store import (
    default_tracking_uri,
    mlflow_settings,
    resolve_tracking_uri,
    ui_command,
)

__all__ = [
    "DATASET_FINGERPRINT_TAG",
    "DVC_LOCK_DIGEST_TAG",
    "FAILURE_MESSAGE_TAG",
    "FAILURE_STAGE_TAG",
    "GitInfo",
    "LINEAGE_ARTIFACT",
    "Lineage",
    "PipelineRun",
    "default_tracking_uri",
    "collect_lineage",
    "dvc_lock_digest",
    "evaluation_metrics",
    "flatten_params",
    "format_dim_table",
    "git_info",
    "is_secret_key",
    "lineage_uri",
    "local_dataset_source",
    "log_pipeline_outputs",
    "metric_key",
    "mlflow_settings",
    "parse_metric_key",
    "read_dvc_lock",
    "read_json",
    "read_run_lineage",
    "redact_overrides",
    "recommended_dim_key",
    "resolve_tracking_uri",
    "train_metric_key",
    "training_metrics",
    "ui_command",
]
