"""Shared plumbing of the pipeline stages: the stage error, atomic outputs, JSON (where
outputs go is :mod:`components.layout`).

Every stage writes its output directory atomically: the previous output is removed *first*
(so a failed run never leaves a stale result a later stage could consume), the new output
is assembled in a hidden sibling (``.<name>.partial-<token>``) and renamed into place only
when the stage succeeds. DVC removes non-persistent outputs before running a stage as well,
so a stage run by hand and a stage run by ``dvc repro`` behave the same.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.layout import HISTORY_FILE, META_FILE

if TYPE_CHECKING:
    from components.data import RetrievalDataset
    from components.embedding import EmbeddingArtifacts

log = logging.getLogger("components.stages")


class StageError(RuntimeError):
    """A stage cannot run or failed for a reason the user can fix (missing input, bad
    params); the message says which file or key and what to do."""


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become None, tuples lists, paths strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _clean(value.item())
    return value


def write_json(path: Path, payload: Any) -> None:
    """Write strict JSON (NaN/inf as null) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(
        json.dumps(_clean(payload), indent=2, ensure_ascii=False, allow_nan=False) + "\n",
        encoding="utf-8",
    )
    os.replace(tmp, path)


def read_json(path: Path, what: str) -> Any:
    """Read a JSON file another stage wrote; a missing file says which stage to run."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StageError(f"{path}: missing; run the {what} stage first") from None
    except ValueError as exc:
        raise StageError(f"{path}: invalid JSON ({exc})") from None


def load_stage_embeddings(embeddings_dir: str | Path) -> EmbeddingArtifacts:
    """Read the ``embed`` stage's output; a missing or broken one is a :class:`StageError`."""
    from components.embedding import EmbeddingStoreError, load_embeddings

    try:
        return load_embeddings(embeddings_dir)
    except EmbeddingStoreError as exc:
        raise StageError(f"{exc} (run the embed stage first)") from None


def check_fingerprint(
    dataset_fingerprint: str,
    meta: dict[str, Any],
    embeddings_dir: str | Path,
    dataset_dir: str | Path,
) -> None:
    """Refuse embeddings made from other data than ``dataset_dir`` holds now."""
    recorded = meta.get("dataset_fingerprint")
    if recorded is not None and recorded != dataset_fingerprint:
        raise StageError(
            f"{Path(embeddings_dir) / META_FILE}: the embeddings were made from different "
            f"data than {dataset_dir} holds now (dataset fingerprint {recorded[:12]} != "
            f"{dataset_fingerprint[:12]}); re-run the embed stage"
        )


def load_matching_inputs(
    embeddings_dir: str | Path, dataset_dir: str | Path
) -> tuple[EmbeddingArtifacts, RetrievalDataset]:
    """The stage's embeddings and dataset, refusing embeddings made from other data."""
    from components.data import load_dataset

    artifacts = load_stage_embeddings(embeddings_dir)
    dataset = load_dataset(dataset_dir)
    check_fingerprint(dataset.fingerprint(), artifacts.meta, embeddings_dir, dataset_dir)
    return artifacts, dataset


def finetune_skipped(finetune_dir: str | Path) -> bool:
    """Whether the finetune output says the stage was skipped (no training labels)."""
    history = read_json(Path(finetune_dir) / HISTORY_FILE, "finetune")
    return bool(history.get("skipped"))


def kept_start(pretrain_dir: str | Path) -> str | None:
    """What stage 1 published when it kept its start unchanged, else ``None``.

    A stage 1 that stopped because no held-out evaluation beat its start (``start_is_best``)
    publishes the start itself: the SVD rotation (``svd_rotation``, the default start) or the
    identity (``base``). Reports name it as that baseline, never as a trained adaptor.

    Args:
        pretrain_dir: the ``pretrain`` stage's output (its ``history.json`` is read).

    Returns:
        ``"svd_rotation"`` or ``"base"`` when the best step is the start, else ``None``.
    """
    payload = read_json(Path(pretrain_dir) / HISTORY_FILE, "pretrain")
    if payload.get("summary", {}).get("best_iteration") != 0:
        return None
    method = payload.get("metadata", {}).get("method", {})
    return "svd_rotation" if method.get("adaptor", {}).get("use_rotation", True) else "base"
