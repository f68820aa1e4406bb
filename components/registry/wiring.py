"""From ``params.yaml`` to a gate or a review: the wiring the CLI and the flows share.

The CLI (``matryoshka promote`` / ``review-report`` / ``rollback``), the promotion flow and
the retraining flow each call one of these with the typed params and a project root, so the
store, the model name, the frozen evaluation set and the ``disabled`` rule are decided in
one place.

Example:
    >>> from components.params import load_params
    >>> outcome = gate_from_params(load_params("params.yaml"), ".")  # doctest: +SKIP
    >>> outcome.action  # doctest: +SKIP
    'promoted'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.config import EvaluationConfig
from components.registry.config import RegistryConfig

if TYPE_CHECKING:  # components.params imports this package's config: no import cycle
    from components.params import PipelineParams


@dataclass(frozen=True)
class RegistrySettings:
    """Everything the registry steps need, resolved from the params and the project.

    Attributes:
        config: ``registry:`` (thresholds, ``run_mode``).
        model_name: ``registry.model_name``, else ``mlflow.registered_model_name``.
        tracking_uri: the MLflow store.
        evaluation: the metric cut-offs (``evaluation:``).
        embeddings_dir / dataset_dir / split: the frozen evaluation set.
    """

    config: RegistryConfig
    model_name: str
    tracking_uri: str
    evaluation: EvaluationConfig
    embeddings_dir: Path
    dataset_dir: Path
    split: str

    def evaluation_set(self) -> Any:
        from components.registry.evaluation_set import load_evaluation_set

        return load_evaluation_set(self.embeddings_dir, self.dataset_dir, self.split)


def registry_settings(
    params: PipelineParams,
    root: str | Path,
    *,
    run_mode: str | None = None,
    model_name: str | None = None,
    tracking_uri: str | None = None,
    embeddings_dir: str | Path | None = None,
    dataset_dir: str | Path | None = None,
    split: str | None = None,
) -> RegistrySettings:
    """Resolve the registry settings; explicit arguments win over the params.

    Relative paths in the params are taken relative to ``root`` (the project, or a run's
    workspace).
    """
    from components.registry.client import resolve_uri

    base = Path(root).resolve()
    config = params.registry
    if run_mode is not None:
        config = config.model_copy(update={"run_mode": run_mode})
    return RegistrySettings(
        config=config,
        model_name=model_name or params.model_name,
        tracking_uri=resolve_uri(tracking_uri, base, params.mlflow.tracking_uri),
        evaluation=params.evaluation,
        embeddings_dir=(
            Path(embeddings_dir) if embeddings_dir else evaluation_embeddings(base, config)
        ),
        dataset_dir=Path(dataset_dir) if dataset_dir else base / params.dataset.path,
        split=split or params.dataset.test_split,
    )


def evaluation_embeddings(root: Path, config: RegistryConfig) -> Path:
    """``<root>/<registry.embeddings_dir>``; where the checkout has none (runs execute in
    workspaces and are applied only on request), the newest finished run's."""
    direct = root / config.embeddings_dir
    if direct.is_dir():
        return direct
    from components.runs import FINISHED, RunRecord, RunsLayout

    layout = RunsLayout(root)
    for run_id in reversed(layout.run_ids()):
        record = RunRecord.load(layout.run_dir(run_id))
        candidate = record.workspace / config.embeddings_dir
        if record.status == FINISHED and candidate.is_dir():
            return candidate
    return direct


def gate_from_params(
    params: PipelineParams,
    root: str | Path,
    *,
    version: int | str | None = None,
    report_dir: str | Path | None = None,
    **overrides: Any,
) -> Any:
    """Run the promotion gate (:func:`components.registry.promotion.promote`).

    ``run_mode: disabled`` returns at once without loading the evaluation set.

    Returns:
        The :class:`components.registry.promotion.PromotionOutcome`.
    """
    from components.registry.promotion import promote

    settings = registry_settings(params, root, **overrides)
    data = None if settings.config.run_mode == "disabled" else settings.evaluation_set()
    return promote(
        settings.model_name,
        data,
        settings.config,
        version=version,
        tracking_uri=settings.tracking_uri,
        evaluation=settings.evaluation,
        report_dir=report_dir,
    )


def review_from_params(
    params: PipelineParams,
    root: str | Path,
    version: int | str,
    *,
    out_dir: str | Path | None = None,
    attach: bool = True,
    **overrides: Any,
) -> Any:
    """Write (and attach) the review report of ``version``
    (:func:`components.registry.promotion.review_version`)."""
    from components.registry.promotion import review_version

    settings = registry_settings(params, root, **overrides)
    return review_version(
        settings.model_name,
        version,
        settings.evaluation_set(),
        settings.config,
        tracking_uri=settings.tracking_uri,
        evaluation=settings.evaluation,
        out_dir=out_dir,
        attach=attach,
    )
