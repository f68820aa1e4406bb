"""From a pipeline run or ``params.yaml`` to the registry: the wiring the CLI and flows share.

The CLI (``matryoshka promote`` / ``review-report`` / ``rollback``), the promotion flow and
the retraining flow each call one of these in a few lines (:func:`register_pipeline_run`,
:func:`gate_from_params`, :func:`review_from_params`, :func:`registry_settings`), so the
store, the model name, the frozen evaluation set and the ``disabled`` rule are decided in
one place.

Example:
    >>> from components.params import load_params
    >>> outcome = gate_from_params(load_params("params.yaml"), ".")  # doctest: +SKIP
    >>> outcome.action  # doctest: +SKIP
    'promoted'
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.config import EvaluationConfig
from components.layout import RunLayout
from components.registry.config import RegistryConfig

if TYPE_CHECKING:  # components.params imports this package's config: no import cycle
    from components.params import PipelineParams

log = logging.getLogger(__name__)


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
    """``registry.embeddings_dir`` (relative to ``root``), else the embed stage's output
    under ``root``; where the checkout has none (runs execute in workspaces and are applied
    only on request), the newest finished run's."""
    if config.embeddings_dir is not None:
        return root / config.embeddings_dir
    direct = RunLayout().under(root).embeddings
    if direct.is_dir():
        return direct
    from components.runs import FINISHED, RunRecord, RunsLayout

    runs = RunsLayout(root)
    for run_id in reversed(runs.run_ids()):
        record = RunRecord.load(runs.run_dir(run_id))
        candidate = RunLayout().under(record.workspace).embeddings
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


def same_lineage_version(client: Any, model_name: str, dvc_lock_digest: str | None) -> str | None:
    """The version of ``model_name`` registered from identical DVC lineage (the same
    ``dvc_lock_digest`` tag: every stage ran on the same inputs and produced the same
    outputs), if any."""
    if not dvc_lock_digest:
        return None
    from mlflow.exceptions import MlflowException

    from components.tracking.lineage import DVC_LOCK_DIGEST_TAG

    try:
        versions = client.search_model_versions(f"name='{model_name}'")
    except MlflowException:  # no registered model yet
        return None
    for version in versions:
        if (version.tags or {}).get(DVC_LOCK_DIGEST_TAG) == dvc_lock_digest:
            return str(version.version)
    return None


def register_pipeline_run(
    run: Any,
    layout: RunLayout,
    model_name: str,
    lineage_tags: dict[str, str],
    *,
    before_register: Callable[[str | None], None] | None = None,
) -> dict[str, Any]:
    """Register a finished pipeline run's adaptor as the new ``@challenger``.

    The adaptor is the finetune stage's when it trained one, else the pretrain stage's. A
    version with the identical DVC lineage is not registered
    again (a re-run where nothing changed: same ``dvc.lock`` digest). The MLflow run is
    tagged with the outcome.

    Args:
        run: the :class:`components.tracking.PipelineRun` the model is logged into.
        layout: the run's outputs (``RunLayout().under(workspace)``).
        model_name: the registered model.
        lineage_tags: the tags :meth:`components.tracking.PipelineRun.log_lineage` set
            (``git_commit``, ``dvc_lock_digest``); the run's ``lineage/lineage.json`` holds
            the rest.
        before_register: called with the current ``@challenger`` version (or None) just
            before a new version is created, so a caller can record what to restore.

    A run whose only adaptor is a pretrain stage that kept its start (``untrained`` in
    ``metrics.json``: it *is* the SVD rotation) registers nothing: ``version`` is None and
    ``skipped`` says why (the run is tagged ``registry.skipped``).

    Returns:
        ``{"model_name", "version", "new"}`` (and ``skipped`` when nothing was registered).
    """
    from components.registry.client import alias_version
    from components.registry.config import CHALLENGER
    from components.registry.register import register_run_model
    from components.tracking import read_json
    from components.tracking.lineage import DVC_LOCK_DIGEST_TAG

    finetuned = (layout.finetune_adaptor / "adaptor.json").is_file()
    adaptor_dir = layout.finetune_adaptor if finetuned else layout.pretrain_adaptor
    digest = lineage_tags.get(DVC_LOCK_DIGEST_TAG)
    metrics = read_json(layout.metrics_json) or {}
    kept = None if finetuned else (metrics.get("untrained") or {}).get("adaptor_unsupervised")
    if kept is not None:
        # The pretrain stage kept its start: the "adaptor" is that baseline, not a model.
        reason = (
            f"nothing trained: the pretrain stage kept its start ({kept}) and there is no "
            "finetune stage, so no version is registered"
        )
        log.info("%s: %s", model_name, reason)
        run.log_tags({"registry.model_name": model_name, "registry.skipped": reason})
        return {"model_name": model_name, "version": None, "new": False, "skipped": reason}
    existing = same_lineage_version(run.client, model_name, digest)
    if existing is not None:
        log.info(
            "nothing changed since %s v%s (same DVC lineage): not registered", model_name, existing
        )
        outcome = {"model_name": model_name, "version": existing, "new": False}
    else:
        previous = alias_version(run.client, model_name, CHALLENGER)
        if before_register is not None:
            before_register(str(previous.version) if previous is not None else None)
        meta = read_json(layout.embeddings_meta) or {}
        metadata = {
            "provider": meta.get("provider"),
            "base_model": meta.get("model"),
            "dataset_fingerprint": meta.get("dataset_fingerprint"),
            "git_commit": lineage_tags.get("git_commit"),
            "dvc_lock_digest": digest,
            "adaptor_method": "adaptor_supervised" if finetuned else "adaptor_unsupervised",
        }
        version = register_run_model(
            run.run_id,
            adaptor_dir,
            metrics,
            metadata,
            model_name=model_name,
            tracking_uri=run.tracking_uri,
        )
        outcome = {"model_name": model_name, "version": str(version.version), "new": True}
    run.log_tags(
        {
            "registry.model_name": model_name,
            "registry.version": outcome["version"],
            "registry.new_version": str(outcome["new"]).lower(),
        }
    )
    return outcome
