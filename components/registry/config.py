"""The ``registry:`` section of ``params.yaml``: the promotion gate's thresholds and mode.

Example:
    >>> from components.registry.config import RegistryConfig
    >>> config = RegistryConfig(run_mode="dry_run", ndcg_floor={64: 0.6})
    >>> config.floor_at(64), config.floor_at(128)
    (0.6, 0.0)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

CHAMPION = "champion"
CHALLENGER = "challenger"

RunMode = Literal["disabled", "dry_run", "enabled", "approval"]


class RegistryConfig(BaseModel):
    """Promotion gate settings (see docs/registry.md).

    Attributes:
        model_name: registered model; ``None`` = ``mlflow.registered_model_name``
            (:attr:`components.params.PipelineParams.model_name`).
        run_mode: ``disabled`` (the gate does nothing), ``dry_run`` (decides and logs, never
            moves an alias or a status), ``enabled`` (promote on pass) or ``approval``
            (on pass, the retraining flow pauses until a person approves or rejects in the
            Prefect UI; see :mod:`components.registry.approval`).
        metric: the evaluation column the gate compares (``ndcg_at_10``).
        dims: the sizes m that count; ``None`` = every trained size of the challenger.
        ndcg_floor: absolute floor of ``metric`` at each counted m: one number for all, or
            ``{m: floor}`` (sizes not listed have floor 0).
        min_delta_vs_champion: at every counted m, challenger − champion must be >= this
            (0 = no regression; 0.01 = must improve by a point; -0.005 = tolerate noise).
        min_delta_vs_baselines: at every counted m, challenger − best baseline must be >=
            this. The only comparison for a first version (no champion yet).
        baselines: the training-free methods the challenger must beat; ``None`` = every
            one of :data:`components.baselines.BASELINES` (``base`` truncation, ``pca``,
            ``svd_rotation``, ``pca_layernorm``, ``whitening``). Names are checked when the
            gate fits them (:func:`components.baselines.baseline_names`): this module stays
            free of the baselines' code, which every pipeline stage would otherwise import.
        embeddings_dir: the frozen evaluation set's embeddings (``corpus.npy``,
            ``queries.npy``, ids, ``meta.json``); ``None`` = the embed stage's output
            (:attr:`components.layout.RunLayout.embeddings`).
        approval_timeout_s: ``approval`` mode: seconds the paused flow waits for a decision;
            after that the version stays ``@challenger`` tagged ``approval_decision=timed_out``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_name: str | None = None
    run_mode: RunMode = "enabled"
    metric: str = "ndcg_at_10"
    dims: tuple[int, ...] | None = None
    ndcg_floor: float | dict[int, float] = 0.0
    min_delta_vs_champion: float = 0.0
    min_delta_vs_baselines: float = 0.0
    baselines: tuple[str, ...] | None = None
    embeddings_dir: str | None = None
    approval_timeout_s: int = Field(default=86400, gt=0)

    @field_validator("dims")
    @classmethod
    def _positive_dims(cls, dims: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if dims is not None:
            if not dims:
                raise ValueError(
                    "registry.dims is empty: list sizes, or null for every trained size"
                )
            bad = [m for m in dims if m <= 0]
            if bad:
                raise ValueError(f"registry.dims must be positive, got {bad}")
        return dims

    @field_validator("ndcg_floor")
    @classmethod
    def _floor_range(cls, floor: float | dict[int, float]) -> float | dict[int, float]:
        values = floor.values() if isinstance(floor, dict) else [floor]
        bad = [v for v in values if not 0.0 <= v <= 1.0]
        if bad:
            raise ValueError(f"registry.ndcg_floor values must be in [0, 1], got {bad}")
        return floor

    def floor_at(self, dim: int) -> float:
        """The absolute floor at size ``dim``."""
        if isinstance(self.ndcg_floor, dict):
            return float(self.ndcg_floor.get(int(dim), 0.0))
        return float(self.ndcg_floor)
