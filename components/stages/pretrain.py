"""Stage ``pretrain``: stage 1 of the adaptor (unsupervised, Eq. 4) on corpus embeddings.

Output ``runs/pretrain/``: ``adaptor/{adaptor.json, adaptor.safetensors}`` and
``history.json`` (the stage summary, per-step losses ``history``, the held-out curve
``evaluations`` and the adaptor metadata). Also home of the helpers the ``finetune`` stage
shares (:class:`TrainingOutput`, :func:`adaptor_metadata`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.atomic import staged_directory
from components.config import MethodConfig
from components.layout import ADAPTOR_DIR, DEFAULT_LAYOUT, HISTORY_FILE
from components.params import PipelineParams
from components.stages.common import StageError, load_stage_embeddings, write_json

if TYPE_CHECKING:
    from components.training import OptimResult

log = logging.getLogger("components.stages.pretrain")


@dataclass(frozen=True)
class TrainingOutput:
    """What a training stage wrote.

    Attributes:
        out_dir: the stage's output directory.
        history_path: ``out_dir/history.json``.
        adaptor_dir: ``out_dir/adaptor``, or ``None`` when the stage was skipped.
        result: the trainer's result (``None`` when skipped).
        metadata: the metadata saved with the adaptor (``{}`` when skipped).
    """

    out_dir: Path
    history_path: Path
    adaptor_dir: Path | None
    result: OptimResult | None
    metadata: dict[str, Any]

    @property
    def skipped(self) -> bool:
        return self.adaptor_dir is None


def adaptor_metadata(
    meta: dict[str, Any], method: MethodConfig, dim: int, stage: str, result: OptimResult
) -> dict[str, Any]:
    """The provenance saved next to an adaptor's weights.

    Provider, base model, d, the trained prefix sizes, the dataset and its fingerprint, the
    stage, and the best held-out score, so a registry or server can check compatibility
    without the training run.
    """
    dims, weights = method.loss.resolve_dims(dim)
    return {
        "stage": stage,
        "provider": meta.get("provider"),
        "base_model": meta.get("model"),
        "base_model_id": meta.get("model_id"),
        "dim": dim,
        "normalized_inputs": meta.get("normalize"),
        "prefix_dims": list(dims),
        "prefix_weights": list(weights),
        "dataset": meta.get("dataset"),
        "dataset_fingerprint": meta.get("dataset_fingerprint"),
        "best_iteration": result.best_iteration,
        "best_score": result.best_score,  # of the selection pass when a refit followed
        "refit_iterations": result.refit_iterations,
        "score_name": result.score_name,
        "method": method.model_dump(mode="json"),
    }


def history_payload(stage: str, result: OptimResult, metadata: dict[str, Any]) -> dict[str, Any]:
    return {
        "stage": stage,
        "skipped": False,
        "summary": result.summary(),
        "history": result.history,
        "evaluations": result.evaluations,
        "metadata": metadata,
    }


def published(
    stage: str, out: Path, result: OptimResult, metadata: dict[str, Any]
) -> TrainingOutput:
    """Log a finished training stage and describe its published output."""
    log.info(
        "%s: best %s=%.4f at step %d of %d (%.1fs) -> %s",
        stage,
        result.score_name,
        result.best_score,
        result.best_iteration,
        result.iterations,
        result.seconds,
        out,
    )
    return TrainingOutput(out, out / HISTORY_FILE, out / ADAPTOR_DIR, result, metadata)


def run_pretrain(
    embeddings_dir: str | Path,
    params: PipelineParams,
    out_dir: str | Path = DEFAULT_LAYOUT.pretrain,
) -> TrainingOutput:
    """Stage 1: train the adaptor on corpus embeddings alone (no labels).

    Args:
        embeddings_dir: the ``embed`` stage's output.
        params: pipeline params (``method:``).
        out_dir: output directory, replaced atomically (``adaptor/`` + ``history.json``).

    Raises:
        StageError: embeddings missing/unfinished, or training rejected them (e.g. fewer
            than 20 documents, a prefix size larger than d).
    """
    from components.adaptor import save_adaptor
    from components.training import train_unsupervised

    out = Path(out_dir)
    with staged_directory(out, clear_first=True) as staging:
        artifacts = load_stage_embeddings(embeddings_dir)
        try:
            adaptor, result = train_unsupervised(artifacts.corpus, params.method)
        except ValueError as exc:
            raise StageError(f"pretrain: {exc}") from None
        metadata = adaptor_metadata(
            artifacts.meta, params.method, artifacts.dimensions, "pretrain", result
        )
        save_adaptor(adaptor, staging / ADAPTOR_DIR, metadata)
        write_json(staging / HISTORY_FILE, history_payload("pretrain", result, metadata))
    return published("pretrain", out, result, metadata)
