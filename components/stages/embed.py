"""Stage ``embed``: base embeddings for the corpus and the queries, then the GX embeddings
suite.

Output ``runs/embeddings/``: ``corpus.npy``, ``queries.npy``, ``corpus_ids.json``,
``queries_ids.json``, ``meta.json`` (see :mod:`components.embedding.store`) and
``validation/`` (GX artifacts of the embeddings suite). Extraction goes through the
content-addressed cache (``embedding.cache_dir``, default ``.cache/embeddings``), so a re-run
on unchanged texts makes no model or API call. The directory is assembled in a staging
sibling and renamed into place only when the embeddings suite passes: one row per id,
dimension d, dtype, finite values and (with ``embedding.normalize``) unit norms.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from components.atomic import remove_path, staged_directory
from components.layout import DEFAULT_LAYOUT, VALIDATION_SUBDIR
from components.params import ParamsError, PipelineParams
from components.stages.common import StageError

if TYPE_CHECKING:
    from components.embedding import EmbeddingArtifacts, EmbeddingConfig

log = logging.getLogger("components.stages.embed")


def declared_dimension(config: EmbeddingConfig) -> int | None:
    """The dimension d the configured model should produce, known without running it.

    ``embedding.dimensions`` when set; for a local sentence-transformers folder, the output
    size its module configs declare (last Dense layer, else the pooling layer); ``None``
    for API models without a requested size (then meta.json's d is used).
    """
    if config.dimensions is not None:
        return config.dimensions
    if not config.spec.reads_model_directory:  # API models: known from meta.json only
        return None
    from components.embedding.providers import provider_identity

    try:
        path = provider_identity(config).model_path
    except ValueError as exc:
        raise ParamsError(str(exc)) from None
    if path is None:
        return None
    try:
        modules = json.loads((path / "modules.json").read_text())
    except (OSError, ValueError):
        return None
    size: int | None = None
    for module in modules:
        folder = path / module.get("path", "")
        kind = str(module.get("type", ""))
        try:
            settings = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if kind.endswith("Pooling"):
            size = settings.get("word_embedding_dimension", size)
        elif kind.endswith("Dense"):
            size = settings.get("out_features", size)
    return int(size) if size else None


def run_embed(
    dataset_dir: str | Path,
    params: PipelineParams,
    out_dir: str | Path = DEFAULT_LAYOUT.embeddings,
) -> EmbeddingArtifacts:
    """Embed a dataset and validate the matrices; ``out_dir`` is replaced atomically.

    Args:
        dataset_dir: the dataset directory (validated by the ``validate`` stage).
        params: pipeline params (``embedding:`` and the embedding thresholds of
            ``validation:``).
        out_dir: output directory.

    Returns:
        The artifacts as written (``out_dir`` paths).

    Raises:
        DataValidationError: the embeddings suite failed (NaN, wrong dimension, wrong row
            count, non-unit norms...); the message names the matrix, row and field, and
            ``out_dir`` does not exist afterwards (the GX artifacts are kept in
            ``<out_dir>.failed-validation/``).
        DataFormatError: the dataset cannot be read.
        EmbeddingError: extraction failed after retries (finished batches stay cached).
        ParamsError: an invalid ``embedding:`` or ``validation:`` section.
    """
    from components.data import load_dataset
    from components.embedding import EmbeddingArtifacts, embed_dataset
    from components.validation import DataValidationError, validate_embeddings

    config = params.embedding
    thresholds = params.validation
    out = Path(out_dir)
    expected = declared_dimension(config)
    failed = out.parent / f"{out.name}.failed-validation"
    remove_path(failed)
    with staged_directory(out, clear_first=True) as staging:
        dataset = load_dataset(dataset_dir)
        if dataset.corpus.empty:
            raise StageError(f"{dataset_dir}: the corpus is empty; nothing to embed")
        artifacts = embed_dataset(dataset, config, staging)
        d = expected if expected is not None else int(artifacts.corpus.shape[1])
        report = validate_embeddings(
            artifacts.corpus_ids,
            artifacts.corpus,
            artifacts.query_ids,
            artifacts.queries,
            d,
            thresholds,
            staging / VALIDATION_SUBDIR,
            normalized=config.normalize,
            corpus_source=(out / "corpus.npy").as_posix(),
            query_source=(out / "queries.npy").as_posix(),
        )
        if not report.success:
            # Keep the GX artifacts for inspection, outside anything that looks finished.
            os.replace(staging / VALIDATION_SUBDIR, failed)
            raise DataValidationError(dataclasses.replace(report, artifacts_dir=failed))
    log.info(
        "embeddings: corpus %s, queries %s (%s %s, d=%d) -> %s",
        artifacts.corpus.shape,
        artifacts.queries.shape,
        artifacts.meta.get("provider"),
        artifacts.meta.get("model"),
        d,
        out,
    )
    return EmbeddingArtifacts(
        out,
        artifacts.corpus_ids,
        artifacts.corpus,
        artifacts.query_ids,
        artifacts.queries,
        artifacts.meta,
    )
