"""The pipeline's stages as plain functions (no Prefect, no DVC): explicit paths and params in,
atomically written outputs out.

=========  ==================================  =============================================
stage      function                            output (default, under ``runs/``)
=========  ==================================  =============================================
validate   :func:`run_validate`                ``validation/`` (GX artifacts, ``passed.json``)
embed      :func:`run_embed`                   ``embeddings/`` (matrices, ids, meta, GX)
pretrain   :func:`run_pretrain`                ``pretrain/`` (``adaptor/``, ``history.json``)
finetune   :func:`run_finetune`                ``finetune/`` (``adaptor/``?, ``history.json``)
evaluate   :func:`run_evaluate`                ``evaluation/`` (metrics, CSVs, plot, table)
=========  ==================================  =============================================

The Prefect flow calls these functions; ``dvc.yaml`` runs them through the ``matryoshka``
CLI (``matryoshka <stage>``). :func:`run_stage` runs one by name with the default layout.

Example:
    >>> from components.params import load_params
    >>> from components.stages import run_stage
    >>> params = load_params("params.yaml", {"method.train.seed": 1})  # doctest: +SKIP
    >>> run_stage("pretrain", params)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.params import ParamsError, PipelineParams
from components.stages.common import RunLayout, StageError
from components.stages.embed import run_embed
from components.stages.evaluate import (
    EvaluationOutput,
    best_recommendation,
    format_results,
    load_results,
    run_evaluate,
)
from components.stages.finetune import SKIP_MESSAGE, run_finetune
from components.stages.pretrain import TrainingOutput, run_pretrain
from components.stages.validate import run_validate

#: Stage names, in pipeline order; the same names as in ``dvc.yaml``.
STAGE_NAMES: tuple[str, ...] = ("validate", "embed", "pretrain", "finetune", "evaluate")


def run_stage(
    name: str,
    params: PipelineParams,
    *,
    dataset_dir: str | Path | None = None,
    layout: RunLayout | None = None,
) -> Any:
    """Run stage ``name`` with the default output layout (``runs/<stage>``).

    Args:
        name: one of :data:`STAGE_NAMES`.
        params: pipeline params.
        dataset_dir: the dataset; default ``dataset.path`` from the params.
        layout: where outputs go (default: under ``runs/``).

    Returns:
        The stage function's result.
    """
    layout = layout or RunLayout()
    dataset = Path(dataset_dir) if dataset_dir is not None else params.dataset.path
    if name == "validate":
        return run_validate(dataset, params, layout.validation)
    if name == "embed":
        return run_embed(dataset, params, layout.embeddings)
    if name == "pretrain":
        return run_pretrain(layout.embeddings, params, layout.pretrain)
    if name == "finetune":
        return run_finetune(dataset, layout.embeddings, layout.pretrain, params, layout.finetune)
    if name == "evaluate":
        return run_evaluate(
            dataset, layout.embeddings, layout.pretrain, layout.finetune, params, layout.evaluation
        )
    raise ParamsError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")


__all__ = [
    "SKIP_MESSAGE",
    "STAGE_NAMES",
    "EvaluationOutput",
    "ParamsError",
    "RunLayout",
    "StageError",
    "TrainingOutput",
    "best_recommendation",
    "format_results",
    "load_results",
    "run_embed",
    "run_evaluate",
    "run_finetune",
    "run_pretrain",
    "run_stage",
    "run_validate",
]
