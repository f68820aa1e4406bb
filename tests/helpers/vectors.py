"""Helpers for precomputed vectors (``embedding.provider: precomputed``); no tests here.

:func:`export_parquet` / :func:`export_npy` write an embeddings directory's matrices into
``<dataset>/embeddings/`` the way a vector-database export would, optionally shuffled (a
database returns rows in its own order).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.embedding import EmbeddingArtifacts
from components.embedding.precomputed import vectors_dir

TABLES = ("corpus", "queries")


def _rows(artifacts: EmbeddingArtifacts, table: str) -> tuple[list[str], np.ndarray]:
    if table == "corpus":
        return list(artifacts.corpus_ids), np.asarray(artifacts.corpus)
    return list(artifacts.query_ids), np.asarray(artifacts.queries)


def _order(n: int, shuffle_seed: int | None) -> np.ndarray:
    if shuffle_seed is None:
        return np.arange(n)
    return np.random.default_rng(shuffle_seed).permutation(n)


def write_parquet(
    path: Path,
    ids: list[str],
    vectors: list[list[float]] | np.ndarray,
    *,
    id_column: str = "id",
    vector_column: str = "vector",
    fixed_size: bool = False,
    value_type: pa.DataType | None = None,
    row_group_size: int | None = None,
) -> Path:
    """One Parquet file of ``(id, vector)`` rows (vectors may be ragged lists)."""
    value_type = value_type or pa.float32()
    rows = [list(map(float, v)) if value_type != pa.string() else v for v in vectors]
    if fixed_size:
        kind: pa.DataType = pa.list_(value_type, len(rows[0]))
    else:
        kind = pa.list_(value_type)
    table = pa.table(
        {id_column: pa.array(ids, pa.string()), vector_column: pa.array(rows, type=kind)}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def export_parquet(
    artifacts: EmbeddingArtifacts,
    dataset_dir: Path,
    *,
    shuffle_seed: int | None = 0,
    fixed_size: bool = False,
) -> dict[str, Path]:
    """``embeddings/corpus.parquet`` and ``queries.parquet`` from an embeddings directory."""
    out = {}
    for table in TABLES:
        ids, matrix = _rows(artifacts, table)
        order = _order(len(ids), shuffle_seed)
        out[table] = write_parquet(
            vectors_dir(dataset_dir) / f"{table}.parquet",
            [ids[i] for i in order],
            matrix[order],
            fixed_size=fixed_size,
        )
    return out


def export_npy(
    artifacts: EmbeddingArtifacts,
    dataset_dir: Path,
    *,
    ids_format: str = "txt",
    shuffle_seed: int | None = 0,
) -> dict[str, Path]:
    """``embeddings/<table>.npy`` + ``<table>_ids.txt`` (or ``.json``)."""
    folder = vectors_dir(dataset_dir)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for table in TABLES:
        ids, matrix = _rows(artifacts, table)
        order = _order(len(ids), shuffle_seed)
        np.save(folder / f"{table}.npy", matrix[order])
        shuffled = [ids[i] for i in order]
        id_file = folder / f"{table}_ids.{ids_format}"
        if ids_format == "json":
            id_file.write_text(json.dumps(shuffled))
        else:
            id_file.write_text("".join(f"{i}\n" for i in shuffled))
        out[table] = folder / f"{table}.npy"
    return out
