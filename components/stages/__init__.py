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
from typing import TYPE_CHECKING, Any

from components.layout import RunLayout
from components.lazy import lazy_exports
from components.stages.common import StageError

if TYPE_CHECKING:
    from components.params import PipelineParams

# Names are imported on first use (components/lazy.py): a stage command loads its own stage
# module only, so DVC deps list exactly the code each stage runs.
_EXPORTS = {
    "run_embed": "embed",
    "EvaluationOutput": "evaluate",
    "best_recommendation": "evaluate",
    "format_results": "evaluate",
    "load_results": "evaluate",
    "run_evaluate": "evaluate",
    "SKIP_MESSAGE": "finetune",
    "run_finetune": "finetune",
    "TrainingOutput": "pretrain",
    "run_pretrain": "pretrain",
    "run_validate": "validate",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

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
    from components.params import ParamsError

    layout = layout or RunLayout()
    dataset = Path(dataset_dir) if dataset_dir is not None else params.dataset.path
    if name == "validate":
        from components.stages.validate import run_validate

        return run_validate(dataset, params, layout.validation)
    if name == "embed":
        from components.stages.embed import run_embed

        return run_embed(dataset, params, layout.embeddings)
    if name == "pretrain":
        from components.stages.pretrain import run_pretrain

        return run_pretrain(layout.embeddings, params, layout.pretrain)
    if name == "finetune":
        from components.stages.finetune import run_finetune

        return run_finetune(dataset, layout.embeddings, layout.pretrain, params, layout.finetune)
    if name == "evaluate":
        from components.stages.evaluate import run_evaluate

        return run_evaluate(
            dataset, layout.embeddings, layout.pretrain, layout.finetune, params, layout.evaluation
        )
    raise ParamsError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")


__all__ = ["STAGE_NAMES", "RunLayout", "StageError", "run_stage"]
__all__ += sorted(_EXPORTS)
