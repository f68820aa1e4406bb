"""Save/log the adaptor as an MLflow pyfunc model (the "save" step of the registry).

The model carries the adaptor directory (``adaptor.json`` + ``adaptor.safetensors``), a
``metadata.json`` (provider, base model, d, trained sizes, per-dimension nDCG@10 of every
method, recommended dimension, dataset fingerprint, git commit, ``dvc.lock`` digest; the full
lineage is the run's ``lineage/lineage.json``), a signature
(float32 tensor ``[-1, d]`` in, ``[-1, -1]`` out, param ``dim``), explicit pip
requirements, and a minimal copy of the ``components`` package (``__init__``, ``adaptor``,
``config``): loading needs torch and numpy, not Prefect, DVC or Great Expectations.

Example:
    >>> from components.registry.packaging import build_model_metadata, save_adaptor_model
    >>> meta = build_model_metadata("runs/finetune/adaptor", metrics_json, {})  # doctest: +SKIP
    >>> save_adaptor_model("runs/finetune/adaptor", "/tmp/model", meta)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from components.baselines import BASELINES

MODEL_CODE = Path(__file__).with_name("model_code.py")
ADAPTOR_ARTIFACT = "adaptor"  # keys of the pyfunc's artifacts, read by model_code.py
METADATA_ARTIFACT = "metadata"
METADATA_FILE = "metadata.json"
DEFAULT_ARTIFACT_NAME = "adaptor_model"
# The modules the pyfunc imports on load; nothing else of `components` travels with it.
_SHIPPED_MODULES = ("__init__.py", "adaptor.py", "config.py")
METADATA_KEYS = ("provider", "base_model", "dataset_fingerprint", "git_commit", "dvc_lock_digest")


def _json_safe(value: Any) -> Any:
    """Plain JSON types (string keys, floats, lists) for a metadata document."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return value


def metrics_document(evaluation_metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Accept the evaluate stage's ``metrics.json`` or its bare ``metrics`` mapping."""
    if "metrics" in evaluation_metrics and isinstance(evaluation_metrics["metrics"], Mapping):
        return dict(evaluation_metrics)
    return {"metrics": dict(evaluation_metrics)}


def ndcg_table(
    evaluation_metrics: Mapping[str, Any], metric: str = "ndcg_at_10"
) -> dict[str, dict[int, float]]:
    """``method → m → metric value`` from an evaluation document.

    Example:
        >>> ndcg_table({"metrics": {"base": {"64": {"ndcg_at_10": 0.5}}}})
        {'base': {64: 0.5}}
    """
    nested = metrics_document(evaluation_metrics)["metrics"]
    return {
        str(method): {
            int(m): float(values[metric]) for m, values in dims.items() if metric in values
        }
        for method, dims in nested.items()
    }


def pick_adaptor_method(methods: list[str], preferred: str | None = None) -> str | None:
    """The registered adaptor's row in an evaluation: ``preferred``, else
    ``adaptor_supervised``, else ``adaptor_unsupervised``, else the first non-baseline."""
    if preferred:
        return preferred
    for name in ("adaptor_supervised", "adaptor_unsupervised"):
        if name in methods:
            return name
    others = [m for m in methods if m not in BASELINES]
    return others[0] if others else None


def read_adaptor_document(adaptor_dir: str | Path) -> dict[str, Any]:
    """``adaptor.json`` of an adaptor directory (d, config and saved metadata)."""
    path = Path(adaptor_dir) / "adaptor.json"
    if not path.is_file():
        raise FileNotFoundError(f"{adaptor_dir}: not an adaptor directory (no adaptor.json)")
    return json.loads(path.read_text())


def build_model_metadata(
    adaptor_dir: str | Path,
    evaluation_metrics: Mapping[str, Any],
    metadata: Mapping[str, Any],
    *,
    method: str | None = None,
    metric: str = "ndcg_at_10",
) -> dict[str, Any]:
    """The metadata document stored with the model (and shown in the review report).

    Args:
        adaptor_dir: the adaptor directory (its ``adaptor.json`` metadata fills gaps).
        evaluation_metrics: the evaluate stage's ``metrics.json`` payload.
        metadata: run metadata; recognised keys: ``provider``, ``base_model``,
            ``trained_dims``, ``dataset_fingerprint``, ``git_commit``, ``dvc_lock_digest``,
            ``adaptor_method``, ``recommended_dim``; other keys are kept as they are.
        method: the adaptor's method name in the evaluation (default: see
            :func:`pick_adaptor_method`).
    """
    document = read_adaptor_document(adaptor_dir)
    saved = document.get("metadata") or {}
    d = int(document["dim"])
    merged: dict[str, Any] = {**saved, **dict(metadata)}
    trained = merged.get("trained_dims") or saved.get("prefix_dims")
    if not trained:
        from components.config import default_prefix_dims

        trained = default_prefix_dims(d)
    trained_dims = sorted({int(m) for m in trained if 0 < int(m) <= d})
    evaluation = metrics_document(evaluation_metrics)
    table = ndcg_table(evaluation, metric)
    adaptor_method = pick_adaptor_method(list(table), method or merged.get("adaptor_method"))
    recommended = merged.get("recommended_dim")
    if recommended is None and adaptor_method:
        recommended = (evaluation.get("recommended_dim") or {}).get(adaptor_method)
    recommended_dim = _nearest_trained(recommended, trained_dims)
    out = {key: merged.get(key) for key in METADATA_KEYS}
    out.update(
        {
            "d": d,
            "trained_dims": trained_dims,
            "adaptor_method": adaptor_method,
            "metric": metric,
            "ndcg_at_10": table if metric == "ndcg_at_10" else ndcg_table(evaluation),
            "recommended_dim": recommended_dim,
            "recommended_dims": evaluation.get("recommended_dim") or {},
            "base_full_ndcg": evaluation.get("base_full_ndcg"),
            "registered_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    extra = {k: v for k, v in merged.items() if k not in out and k not in ("prefix_dims",)}
    out["extra"] = extra
    return _json_safe(out)


def _nearest_trained(recommended: Any, trained_dims: list[int]) -> int:
    """The smallest trained size >= the recommendation (the largest when there is none)."""
    if recommended is None:
        return trained_dims[-1]
    fits = [m for m in trained_dims if m >= int(recommended)]
    return fits[0] if fits else trained_dims[-1]


def model_signature(d: int, default_dim: int) -> Any:
    """float32 ``[-1, d]`` in, float32 ``[-1, -1]`` out, param ``dim`` (long)."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, d))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1))]),
        params=ParamSchema([ParamSpec("dim", "long", int(default_dim))]),
    )


def pip_requirements() -> list[str]:
    """Exact pins of what loading needs (explicit, so MLflow skips its slow inference)."""
    pins = ["torch==2.13.0"]
    for package in ("mlflow", "numpy", "safetensors", "pydantic", "pyyaml"):
        try:
            pins.append(f"{package}=={importlib_metadata.version(package)}")
        except importlib_metadata.PackageNotFoundError:
            pins.append(package)
    return pins


@contextmanager
def staged_model_inputs(
    adaptor_dir: str | Path, metadata: Mapping[str, Any]
) -> Iterator[dict[str, Any]]:
    """Temporary folder with the minimal ``components`` package and ``metadata.json``.

    Yields the keyword arguments shared by ``save_model`` and ``log_model``.
    """
    package_root = Path(__file__).resolve().parents[1]
    adaptor_dir = Path(adaptor_dir)
    read_adaptor_document(adaptor_dir)  # fails early on a wrong folder
    with tempfile.TemporaryDirectory(prefix="adaptor-model-") as tmp:
        code = Path(tmp) / "components"
        code.mkdir()
        for module in _SHIPPED_MODULES:
            shutil.copy2(package_root / module, code / module)
        staged_adaptor = Path(tmp) / ADAPTOR_ARTIFACT  # copied under this name into the model
        shutil.copytree(adaptor_dir, staged_adaptor)
        metadata_path = Path(tmp) / METADATA_FILE
        metadata_path.write_text(json.dumps(_json_safe(metadata), indent=2, sort_keys=True))
        yield {
            "python_model": str(MODEL_CODE),
            "artifacts": {
                ADAPTOR_ARTIFACT: str(staged_adaptor),
                METADATA_ARTIFACT: str(metadata_path),
            },
            "code_paths": [str(code)],
            "signature": model_signature(int(metadata["d"]), int(metadata["recommended_dim"])),
            "pip_requirements": pip_requirements(),
            "metadata": {
                k: _json_safe(metadata.get(k))
                for k in (
                    "provider",
                    "base_model",
                    "d",
                    "trained_dims",
                    "recommended_dim",
                    "adaptor_method",
                    "dataset_fingerprint",
                    "git_commit",
                    "dvc_lock_digest",
                )
            },
        }


@contextmanager
def _quiet() -> Iterator[None]:
    """Hide MLflow's advice on type hints and input examples: the signature is explicit."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*(type hints|input example|input_example)", category=UserWarning
        )
        yield


def save_adaptor_model(
    adaptor_dir: str | Path, path: str | Path, metadata: Mapping[str, Any]
) -> Path:
    """Write the pyfunc model to a local folder (no tracking server involved).

    Example:
        >>> save_adaptor_model("runs/finetune/adaptor", "/tmp/m", meta)  # doctest: +SKIP
    """
    import mlflow

    with staged_model_inputs(adaptor_dir, metadata) as kwargs, _quiet():
        mlflow.pyfunc.save_model(path=str(path), **kwargs)
    return Path(path)


def log_adaptor_model(
    adaptor_dir: str | Path,
    metadata: Mapping[str, Any],
    *,
    run_id: str,
    name: str = DEFAULT_ARTIFACT_NAME,
) -> Any:
    """Log the pyfunc model into run ``run_id`` (which may be finished) and return ModelInfo.

    The run is not resumed or re-terminated: the logged model is created in the run's
    experiment with the run as its source, so its status and end time stay as they were.
    """
    from mlflow.models import Model

    import mlflow

    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    logged = mlflow.initialize_logged_model(
        name=name,
        source_run_id=run_id,
        experiment_id=run.info.experiment_id,
        model_type="matryoshka-adaptor",
    )
    with staged_model_inputs(adaptor_dir, metadata) as kwargs, _quiet():
        return Model.log(
            artifact_path=None,
            name=name,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            model_id=logged.model_id,
            **kwargs,
        )
