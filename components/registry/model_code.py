"""The adaptor as an MLflow pyfunc, logged as *model from code*.

MLflow copies this file into the model and executes it on load; it imports only numpy,
torch, mlflow and :mod:`components.adaptor` (shipped in the model's ``code/`` folder), never
Prefect, DVC or Great Expectations. Do not import this module from the package: it ends
with :func:`mlflow.models.set_model`.

Input: float32 base embeddings ``[n, d]``. Param ``dim``: one of the trained sizes (default:
the recommended one). Output: the adapted, truncated, L2-normalised ``[n, dim]`` vectors.

Example:
    >>> import mlflow
    >>> model = mlflow.pyfunc.load_model("models:/matryoshka-adaptor@champion")  # doctest: +SKIP
    >>> model.predict(base_embeddings, params={"dim": 64}).shape  # doctest: +SKIP
    (1000, 64)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

ADAPTOR_ARTIFACT = "adaptor"
METADATA_ARTIFACT = "metadata"


class MatryoshkaAdaptorModel(PythonModel):
    """Pyfunc wrapper: ``predict(embeddings, params={"dim": m}) -> [n, m]`` float32."""

    # The signature is explicit; predict's input is deliberately unannotated, so MLflow's
    # type-hint wrapping (and its warning in every serving log) is skipped.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        from components.adaptor import load_adaptor

        self.adaptor, adaptor_metadata = load_adaptor(context.artifacts[ADAPTOR_ARTIFACT])
        metadata_path = context.artifacts.get(METADATA_ARTIFACT)
        self.metadata = (
            json.loads(Path(metadata_path).read_text()) if metadata_path else dict(adaptor_metadata)
        )
        self.dim = int(self.adaptor.dim)
        self.trained_dims = tuple(int(m) for m in self.metadata.get("trained_dims") or (self.dim,))
        self.default_dim = int(self.metadata.get("recommended_dim") or self.trained_dims[-1])

    def _resolve_dim(self, params: dict[str, Any] | None) -> int:
        raw = (params or {}).get("dim", self.default_dim)
        try:
            dim = int(raw)
        except (TypeError, ValueError):
            dim = -1
        if dim not in self.trained_dims or str(raw) != str(dim):
            raise MlflowException(
                f"invalid dim {raw!r}: this adaptor was trained for dim in "
                f'{list(self.trained_dims)} (d={self.dim}); pass params={{"dim": m}} with '
                "one of them",
                error_code=INVALID_PARAMETER_VALUE,
            )
        return dim

    # model_input is left unannotated: MLflow would otherwise read the hint as a schema.
    def predict(
        self,
        context: Any,
        model_input,  # noqa: ANN001
        params: dict[str, Any] | None = None,
    ) -> np.ndarray:
        """``[n, d]`` float32 base embeddings → ``[n, dim]`` adapted, truncated, normalised."""
        dim = self._resolve_dim(params)
        if hasattr(model_input, "to_numpy"):  # a DataFrame (one column per coordinate)
            model_input = model_input.to_numpy()
        x = np.asarray(model_input, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise MlflowException(
                f"expected float32 base embeddings of shape [n, {self.dim}], got shape "
                f"{tuple(x.shape)}",
                error_code=INVALID_PARAMETER_VALUE,
            )
        try:
            return self.adaptor.embed(x, dim).numpy()
        except ValueError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from exc


set_model(MatryoshkaAdaptorModel())
