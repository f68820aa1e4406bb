"""Which MLflow store the registry talks to, and alias/version look-ups.

Example:
    >>> from components.registry.client import registry_session
    >>> with registry_session("sqlite:///mlflow/mlflow.db") as client:  # doctest: +SKIP
    ...     client.get_model_version_by_alias("matryoshka-adaptor", "champion")
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_ENV_KEYS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def resolve_uri(
    tracking_uri: str | None = None, root: str | Path | None = None, configured: str | None = None
) -> str:
    """``tracking_uri`` > ``MLFLOW_TRACKING_URI`` > an URI set in-process with
    ``mlflow.set_tracking_uri`` > ``configured`` > the project store
    (``sqlite:///<root>/mlflow/mlflow.db``)."""
    if tracking_uri:
        return tracking_uri
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    from mlflow.tracking._tracking_service.utils import _tracking_uri, is_tracking_uri_set

    if is_tracking_uri_set() and _tracking_uri:
        return str(_tracking_uri)
    from components.tracking.store import resolve_tracking_uri

    return resolve_tracking_uri(Path(root) if root else Path.cwd(), configured)


@contextmanager
def registry_session(tracking_uri: str | None = None) -> Iterator[Any]:
    """An ``MlflowClient`` with MLflow's global URIs pointed at the same store meanwhile.

    Some MLflow calls (``models:/`` downloads, ``Model.log``) read the global tracking and
    registry URIs; they are restored afterwards so a caller's settings are untouched.
    """
    from mlflow.tracking._model_registry.utils import _registry_uri
    from mlflow.tracking._tracking_service.utils import _tracking_uri

    import mlflow

    uri = resolve_uri(tracking_uri)
    registry = os.environ.get("MLFLOW_REGISTRY_URI", "").strip() or uri
    previous_tracking, previous_registry = _tracking_uri, _registry_uri
    # set_*_uri also write (or unset) these variables for subprocesses: restore them too.
    saved_env = {key: os.environ.get(key) for key in _ENV_KEYS}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(registry)
    try:
        yield mlflow.MlflowClient(tracking_uri=uri, registry_uri=registry)
    finally:
        mlflow.set_tracking_uri(previous_tracking)
        mlflow.set_registry_uri(previous_registry)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def alias_version(client: Any, model_name: str, alias: str) -> Any | None:
    """The ModelVersion behind ``name@alias``, or None when the alias (or model) is absent."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def require_version(client: Any, model_name: str, version: int | str) -> Any:
    """The ModelVersion ``name/version``; a clear error when it does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(model_name, str(version))
    except MlflowException as exc:
        raise LookupError(
            f"registered model '{model_name}' has no version {version} "
            f"({exc.message.splitlines()[0]})"
        ) from None
