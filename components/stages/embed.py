"""Stage ``embed``: base embeddings for the corpus and the queries, then the GX embeddings
suite.

Output ``runs/embeddings/``: ``corpus.npy``, ``queries.npy``, ``corpus_ids.json``,
``queries_ids.json``, ``meta.json`` (see :mod:`components.embedding.store`) and
``validation/`` (GX artifacts of the embeddings suite). Extraction goes through the
content-addressed cache (``embedding.cache_dir``, default ``.cache/embeddings``), so a re-run
on unchanged texts makes no model or API call. The directory is assembled in a staging
sibling and renamed into place only when the embeddings suite passes: one row per id,
dimension d, dtype, finite values and (with ``embedding.normalize``) unit norms.

``embedding.provider: precomputed`` skips extraction: the vectors shipped in
``<dataset>/embeddings/`` (:mod:`components.embedding.precomputed`) go through the same suite,
which then also requires their ids to be exactly the dataset's (docs/embedding.md, "Bring
your own vectors").
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.atomic import remove_path, staged_directory
from components.data import DataFormatError
from components.layout import DEFAULT_LAYOUT, VALIDATION_SUBDIR
from components.params import ParamsError, PipelineParams
from components.stages.common import StageError

if TYPE_CHECKING:
    import pandas as pd

    from components.data import RetrievalDataset
    from components.embedding import EmbeddingArtifacts, EmbeddingConfig
    from components.embedding.precomputed import Table

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

    With ``embedding.provider: precomputed`` no model runs: the vectors shipped in
    ``<dataset>/embeddings/`` are read (:mod:`components.embedding.precomputed`), checked by
    the embeddings suite (also: their ids equal the dataset's exactly), put in dataset row
    order and written like extracted ones.

    Args:
        dataset_dir: the dataset directory (validated by the ``validate`` stage).
        params: pipeline params (``embedding:`` and the embedding thresholds of
            ``validation:``).
        out_dir: output directory.

    Returns:
        The artifacts as written (``out_dir`` paths).

    Raises:
        DataValidationError: the embeddings suite failed (NaN, wrong dimension, wrong row
            count, non-unit norms, ids not those of the dataset...); the message names the
            matrix, row and field, and ``out_dir`` does not exist afterwards (the GX
            artifacts are kept in ``<out_dir>.failed-validation/``).
        DataFormatError: the dataset, or a precomputed vector file, cannot be read.
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
        if config.spec.reads_vector_files:
            artifacts = precomputed_embeddings(
                dataset_dir, dataset, params, staging, failed, expected
            )
            d = artifacts.dimensions
        else:
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


def precomputed_embeddings(
    dataset_dir: str | Path,
    dataset: RetrievalDataset,
    params: PipelineParams,
    staging: Path,
    failed: Path,
    dimension: int | None,
) -> EmbeddingArtifacts:
    """Read, validate and write the vectors shipped in ``<dataset>/embeddings/``.

    The embeddings suite runs on the vectors as read (file order, so its row numbers are
    the file's), with the declared norms (``embedding.precomputed.normalized``) and the
    dataset's ids as the exact set expected. The rows are then put in dataset order and,
    with ``embedding.normalize`` and undeclared norms, L2-normalised.

    Args:
        dataset_dir: the dataset directory (file names in messages start with it).
        dataset: the loaded dataset.
        params: pipeline params.
        staging: where the embed stage assembles its output.
        failed: where the GX artifacts go when the suite fails.
        dimension: ``embedding.dimensions`` (``None``: the corpus file's).

    Raises:
        DataFormatError: a vector file is missing or cannot be read.
        DataValidationError: the embeddings suite failed (nothing is written).
    """
    from components.embedding import save_embeddings
    from components.embedding.precomputed import (
        PrecomputedVectors,
        expected_names,
        file_digest,
        find_vector_files,
        read_vectors,
        vectors_dir,
    )
    from components.validation import DataValidationError, ExpectedIds, validate_embeddings
    from components.validation.sources import find_table_file

    config = params.embedding
    root = Path(dataset_dir)
    tables: dict[Table, pd.DataFrame] = {"corpus": dataset.corpus, "queries": dataset.queries}
    read: dict[Table, PrecomputedVectors] = {}
    for table, frame in tables.items():
        files = find_vector_files(root, table)
        if files is None and not (table == "queries" and frame.empty):
            raise DataFormatError(
                vectors_dir(root),
                f"embedding.provider is precomputed but there are no {table} vectors: "
                f"expected {expected_names(table)}",
            )
        if files is not None:
            read[table] = read_vectors(files, config.precomputed, dimension)
    if "queries" not in read:  # a dataset without queries needs no query vectors
        empty = np.zeros((0, read["corpus"].matrix.shape[1]), dtype=np.float32)
        read["queries"] = PrecomputedVectors(read["corpus"].files, [], empty)
    d = dimension if dimension is not None else int(read["corpus"].matrix.shape[1])
    if not read["corpus"].ids:
        raise DataFormatError(read["corpus"].files.vectors, "no vectors (the file has no rows)")

    def expected(table: Table) -> ExpectedIds:
        source = find_table_file(root, table)
        label = (source if source is not None else root / table).as_posix()
        return ExpectedIds(label, tuple(tables[table]["id"].tolist()))

    report = validate_embeddings(
        read["corpus"].ids,
        read["corpus"].matrix,
        read["queries"].ids,
        read["queries"].matrix,
        d,
        params.validation,
        staging / VALIDATION_SUBDIR,
        normalized=config.precomputed.normalized,
        corpus_source=read["corpus"].files.vectors.as_posix(),
        query_source=read["queries"].files.vectors.as_posix(),
        corpus_expected=expected("corpus"),
        query_expected=expected("queries"),
    )
    if not report.success:
        os.replace(staging / VALIDATION_SUBDIR, failed)
        raise DataValidationError(dataclasses.replace(report, artifacts_dir=failed))
    normalise = config.normalize and not config.precomputed.normalized
    matrices: dict[Table, np.ndarray] = {}
    for table, vectors in read.items():
        # The suite passed: the file's ids are the table's, each once; take the table's order.
        position = {doc: i for i, doc in enumerate(vectors.ids)}
        ids = tables[table]["id"]
        order = np.fromiter((position[doc] for doc in ids), dtype=np.int64, count=len(ids))
        matrix = np.asarray(vectors.matrix[order], dtype=np.float32)
        if normalise:  # the suite refused zero vectors (validation.embedding_min_norm)
            matrix = (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)
        matrices[table] = matrix
    meta = {
        "provider": config.provider,
        "model": config.model,
        "model_id": None,
        "requested_dimensions": config.dimensions,
        "normalize": config.normalize or config.precomputed.normalized,
        "normalized_by": (
            "source" if config.precomputed.normalized else "pipeline" if normalise else None
        ),
        "dataset": dataset.name,
        "dataset_fingerprint": dataset.fingerprint(),
        # sha256 of every file read: which vectors this run was trained on.
        "sources": {
            path.relative_to(root).as_posix(): file_digest(path)
            for vectors in read.values()
            for path in vectors.files.paths
        },
        "config": config.public_dict(),
    }
    return save_embeddings(
        staging,
        corpus_ids=dataset.corpus["id"].tolist(),
        corpus=matrices["corpus"],
        query_ids=dataset.queries["id"].tolist(),
        queries=matrices["queries"],
        meta=meta,
    )
