"""Where runs go: the tracking URI, the artifact root and the experiment.

Default store: SQLite at ``<root>/mlflow/mlflow.db`` with artifacts under
``<root>/mlflow/artifacts/<experiment>``. ``MLFLOW_TRACKING_URI`` in the environment wins,
then ``mlflow.tracking_uri`` in ``params.yaml``, then the default. With a non-default store
the server decides where artifacts go.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

STORE_DIR = "mlflow"
DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "artifacts"


def default_tracking_uri(root: str | Path) -> str:
    """``sqlite:///<root>/mlflow/mlflow.db`` (absolute, so any working directory works)."""
    return f"sqlite:///{(Path(root).resolve() / STORE_DIR / DB_FILE).as_posix()}"


def default_artifact_root(root: str | Path) -> Path:
    """``<root>/mlflow/artifacts``: where experiments of the default store keep artifacts."""
    return Path(root).resolve() / STORE_DIR / ARTIFACTS_DIR


def resolve_tracking_uri(root: str | Path, configured: str | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` > ``configured`` (params ``mlflow.tracking_uri``) > default."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    if configured:
        return str(configured)
    return default_tracking_uri(root)


def is_local_sqlite(uri: str) -> bool:
    return uri.startswith("sqlite:///")


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores)."""
    if not is_local_sqlite(uri):
        return None
    return Path(uri[len("sqlite:///") :])


def artifact_root_for(uri: str) -> Path | None:
    """Artifact root for a local SQLite store: ``artifacts/`` next to the database file.

    For the default store that is ``<root>/mlflow/artifacts``; other stores (a tracking
    server, a database) choose their own (None).
    """
    db = sqlite_path(uri)
    return None if db is None else db.resolve().parent / ARTIFACTS_DIR


def display_uri(uri: str) -> str:
    """``uri`` safe to log, print or write to a run record: credentials masked.

    A team store may carry them (``postgresql://mlflow:<password>@db/mlflow``,
    ``https://user:<token>@mlflow.example``); they come from the environment and must not
    land in logs, params or files.

    Example:
        >>> display_uri("postgresql://mlflow:s3cret@db:5432/mlflow")
        'postgresql://***@db:5432/mlflow'
    """
    from components.tracking.params import mask_credentials

    return mask_credentials(uri)


def reconnect_uri(recorded: str) -> str:
    """The store to reconnect to from a URI written by :func:`display_uri` (run records).

    Unmasked URIs are used as they are; a masked one is replaced by ``MLFLOW_TRACKING_URI``
    when that masks to the same text (the credentials come from the environment again),
    else it is returned unchanged (and connecting fails with the store's own message).
    """
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env and recorded != env and display_uri(env) == recorded:
        return env
    return recorded


def ui_command(uri: str) -> str:
    """The command that opens this store in the MLflow UI (http://127.0.0.1:5000);
    credentials in ``uri`` are masked."""
    uri = display_uri(uri)
    if uri.startswith(("http://", "https://", "databricks")):
        return f"open {uri} in a browser (the tracking server's own UI)"
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"


def mlflow_settings(params: dict[str, Any]) -> dict[str, Any]:
    """The ``mlflow:`` section of plain params data, validated, with defaults filled in."""
    from components.params import MlflowConfig

    return MlflowConfig.model_validate(params.get("mlflow") or {}).model_dump()


def ensure_experiment(client: Any, name: str, artifact_root: Path | None) -> str:
    """The id of experiment ``name``, created when missing.

    ``artifact_root`` (default store only) gives the experiment the artifact location
    ``<artifact_root>/<name>``; a deleted experiment of that name is restored.
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)
    location = None
    if artifact_root is not None:
        folder = re.sub(r"[^\w\-.]", "_", name).strip("._") or "experiment"
        location = (artifact_root / folder).as_uri()
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except Exception:
        # Another process created it between the lookup and the create.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def make_client(uri: str) -> Any:
    """An ``MlflowClient`` for ``uri``; the SQLite file's folder is created first."""
    from mlflow.tracking import MlflowClient

    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    registry = os.environ.get("MLFLOW_REGISTRY_URI", "").strip() or uri
    return MlflowClient(tracking_uri=uri, registry_uri=registry)
