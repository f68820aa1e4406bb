"""Loading registered versions: the serving pyfunc, or the bare adaptor for evaluation.

Example:
    >>> from components.registry import load_champion
    >>> model = load_champion("matryoshka-adaptor")  # doctest: +SKIP
    >>> x = base_embeddings.astype("float32")  # doctest: +SKIP
    >>> small = model.predict(x, params={"dim": 64})  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.registry.client import registry_session
from components.registry.config import CHAMPION
from components.registry.packaging import ADAPTOR_ARTIFACT, METADATA_FILE


def model_uri(model_name: str, alias: str | None = None, version: int | str | None = None) -> str:
    """``models:/name@alias`` or ``models:/name/version``."""
    if version is not None:
        return f"models:/{model_name}/{version}"
    return f"models:/{model_name}@{alias or CHAMPION}"


def load_champion(
    model_name: str, *, alias: str = CHAMPION, tracking_uri: str | None = None
) -> Any:
    """The pyfunc behind ``models:/<name>@<alias>`` (``predict(x, params={"dim": m})``)."""
    import mlflow

    with registry_session(tracking_uri):
        return mlflow.pyfunc.load_model(model_uri(model_name, alias))


def download_version(client: Any, model_name: str, version: int | str, dst: str | Path) -> Path:
    """Download version ``version``'s model folder under ``dst``; returns the folder."""
    import mlflow

    uri = client.get_model_version_download_uri(model_name, str(version))
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))


def version_metadata(
    client: Any, model_name: str, version: int | str, dst: str | Path
) -> dict[str, Any]:
    """The ``metadata.json`` a registered version carries."""
    import mlflow

    uri = client.get_model_version_download_uri(model_name, str(version))
    path = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{uri.rstrip('/')}/artifacts/{METADATA_FILE}", dst_path=str(dst)
    )
    return json.loads(Path(path).read_text())


def load_version_adaptor(
    client: Any, model_name: str, version: int | str, dst: str | Path
) -> tuple[Any, dict[str, Any]]:
    """``(MatryoshkaAdaptor, metadata)`` of a registered version (no pyfunc machinery)."""
    from components.adaptor import load_adaptor

    root = download_version(client, model_name, version, Path(dst) / f"v{version}")
    adaptor, _ = load_adaptor(root / "artifacts" / ADAPTOR_ARTIFACT)
    metadata = json.loads((root / "artifacts" / METADATA_FILE).read_text())
    return adaptor, metadata
