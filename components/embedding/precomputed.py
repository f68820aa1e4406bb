"""Vectors that ship with the dataset (``embedding.provider: precomputed``): find and read them.

A dataset may carry the vectors a team already has (exported from a vector database, or
made by any model of any modality) in ``<dataset>/embeddings/``, one set per table:

* ``corpus.parquet`` / ``queries.parquet``: one row per vector, an id column and a vector
  column (a list or fixed-size list of numbers: what Qdrant, pgvector, LanceDB or a FAISS
  export written with pyarrow holds). Columns: ``embedding.precomputed.id_column`` /
  ``vector_column``, by default ``id`` / ``vector``, else the only string-or-integer / list
  column. Read in batches of ``batch_rows`` into one preallocated float32 matrix.
* or ``corpus.npy`` + ``corpus_ids.txt`` (one id per line) or ``corpus_ids.json`` (a JSON
  list), and the same for ``queries``. The ``.npy`` is memory-mapped.

This module only reads (structure: columns, types, one length per vector, ids present);
the embed stage checks the content with the GX embeddings suite (ids equal the dataset's,
one dimension, finite, norms) and writes the usual ``runs/embeddings``. Problems are raised
as :class:`~components.data.DataFormatError` naming file, row (1-based) and field.

Example:
    >>> files = find_vector_files("data/mine", "corpus")  # doctest: +SKIP
    >>> vectors = read_vectors(files, PrecomputedConfig())  # doctest: +SKIP
    >>> vectors.matrix.shape, vectors.ids[:2]  # doctest: +SKIP
    ((5183, 768), ['doc-0', 'doc-1'])
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from components.data import DataFormatError

if TYPE_CHECKING:
    import pyarrow as pa

    from .config import PrecomputedConfig

Table = Literal["corpus", "queries"]

#: The folder inside the dataset that holds precomputed vectors.
VECTORS_DIR = "embeddings"
PARQUET_SUFFIX = ".parquet"
NPY_SUFFIX = ".npy"
#: Id files beside a ``.npy``: ``<table>_ids.txt`` (one per line) or ``<table>_ids.json``.
IDS_SUFFIXES = ("_ids.txt", "_ids.json")
DEFAULT_ID_COLUMN = "id"
DEFAULT_VECTOR_COLUMN = "vector"


def vectors_dir(dataset_dir: str | Path) -> Path:
    """``<dataset>/embeddings``: where precomputed vectors live."""
    return Path(dataset_dir) / VECTORS_DIR


def expected_names(table: Table) -> str:
    """The accepted file names of one table, for messages and docs."""
    ids = " or ".join(f"{table}{s}" for s in IDS_SUFFIXES)
    return f"{table}{PARQUET_SUFFIX}, or {table}{NPY_SUFFIX} with {ids}"


@dataclass(frozen=True)
class VectorFiles:
    """The files of one table's precomputed vectors.

    Attributes:
        table: ``corpus`` or ``queries``.
        vectors: the ``.parquet`` or ``.npy`` file.
        ids: the id file beside a ``.npy`` (``None`` for Parquet).
    """

    table: Table
    vectors: Path
    ids: Path | None = None

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.vectors,) if self.ids is None else (self.vectors, self.ids)


@dataclass(frozen=True)
class PrecomputedVectors:
    """One table's vectors as read, in file order.

    Attributes:
        files: where they came from.
        ids: the id of each row (strings, as the dataset's ids are).
        matrix: ``[n, d]`` float32 (other numeric types are converted; a float32 ``.npy``
            stays memory-mapped).
    """

    files: VectorFiles
    ids: list[str]
    matrix: np.ndarray = field(repr=False)


def find_vector_files(dataset_dir: str | Path, table: Table) -> VectorFiles | None:
    """The precomputed files of ``table`` in ``<dataset>/embeddings``; ``None`` if absent.

    Raises:
        DataFormatError: both a ``.parquet`` and a ``.npy`` exist, a ``.npy`` has no id file
            or two of them, or an id file has no ``.npy``.
    """
    folder = vectors_dir(dataset_dir)
    parquet = folder / f"{table}{PARQUET_SUFFIX}"
    npy = folder / f"{table}{NPY_SUFFIX}"
    id_files = [folder / f"{table}{s}" for s in IDS_SUFFIXES if (folder / f"{table}{s}").exists()]
    if parquet.exists() and npy.exists():
        raise DataFormatError(
            folder, f"both {parquet.name} and {npy.name} exist; keep one set of {table} vectors"
        )
    if parquet.exists():
        return VectorFiles(table, parquet)
    if not npy.exists():
        if id_files:
            raise DataFormatError(id_files[0], f"ids without vectors: {npy.name} is missing")
        return None
    if not id_files:
        raise DataFormatError(npy, f"no ids for these vectors: add {expected_names(table)}")
    if len(id_files) > 1:
        raise DataFormatError(
            folder, f"both {id_files[0].name} and {id_files[1].name} exist; keep one"
        )
    return VectorFiles(table, npy, id_files[0])


def file_digest(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks (recorded in ``meta.json``)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_vectors(
    files: VectorFiles, config: PrecomputedConfig, dimension: int | None = None
) -> PrecomputedVectors:
    """Read one table's vectors (structure only; the GX suite checks the content).

    Args:
        files: from :func:`find_vector_files`.
        config: ``embedding.precomputed``.
        dimension: the declared dimension (``embedding.dimensions``); ``None``: the length
            most vectors of a Parquet file have.

    Raises:
        DataFormatError: unreadable file, missing or ambiguous column, non-numeric vectors,
            a null id or vector, vectors of another length, ids and rows that do not pair up.
    """
    if files.ids is None:
        return _read_parquet(files, config, dimension)
    return _read_npy(files)


# --- Parquet -----------------------------------------------------------------------------
def _is_list(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    )


def _is_id_type(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
    )


def _pick_column(
    path: Path, schema: pa.Schema, configured: str | None, default: str, what: str, fits: Any
) -> str:
    """The configured column, else ``default``, else the only column that ``fits``."""
    names = list(schema.names)
    setting = f"embedding.precomputed.{what}_column"
    if configured is not None:
        if configured not in names:
            raise DataFormatError(
                path, f"no column {configured!r} ({setting}); columns: {', '.join(names)}"
            )
        return configured
    if default in names:
        return default
    candidates = [f.name for f in schema if fits(f.type)]
    if len(candidates) == 1:
        return candidates[0]
    kind = "list" if what == "vector" else "string or integer"
    found = f"{len(candidates)} {kind} columns ({', '.join(candidates)})" if candidates else "none"
    raise DataFormatError(
        path,
        f"cannot tell which column holds the {what}s: no column {default!r} and {found}; "
        f"set {setting}",
    )


def _describe_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_parquet(
    files: VectorFiles, config: PrecomputedConfig, dimension: int | None
) -> PrecomputedVectors:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = files.vectors
    try:
        reader = pq.ParquetFile(path)
        schema = reader.schema_arrow
    except (OSError, pa.ArrowException) as exc:
        raise DataFormatError(path, f"unreadable Parquet file ({exc})") from None
    id_col = _pick_column(path, schema, config.id_column, DEFAULT_ID_COLUMN, "id", _is_id_type)
    vec_col = _pick_column(
        path, schema, config.vector_column, DEFAULT_VECTOR_COLUMN, "vector", _is_list
    )
    id_type, vec_type = schema.field(id_col).type, schema.field(vec_col).type
    if not _is_id_type(id_type):
        raise DataFormatError(
            path, f"ids must be strings or integers, got {id_type}", row=1, field_name=id_col
        )
    numeric = _is_list(vec_type) and (
        pa.types.is_floating(vec_type.value_type) or pa.types.is_integer(vec_type.value_type)
    )
    if not numeric:
        sample = _first_value(reader, vec_col)
        raise DataFormatError(
            path,
            f"expected a list of numbers per row, got {vec_type} (value {sample})",
            row=1,
            field_name=vec_col,
        )
    n = reader.metadata.num_rows
    ids: list[str] = []
    matrix: np.ndarray | None = None
    start = 0
    try:
        batches = reader.iter_batches(batch_size=config.batch_rows, columns=[id_col, vec_col])
        for batch in batches:
            id_array, vectors = batch.column(id_col), batch.column(vec_col)
            batch_ids = id_array.cast(pa.string()).to_pylist()
            _check_nulls(path, id_col, vec_col, batch_ids, vectors, start)
            lengths = pc.list_value_length(vectors).to_numpy(zero_copy_only=False)
            if matrix is None:
                if dimension is None:
                    dimension = Counter(lengths.tolist()).most_common(1)[0][0] if n else 0
                matrix = np.empty((n, int(dimension)), dtype=np.float32)
            _check_lengths(path, vec_col, lengths, int(dimension), batch_ids, start, dimension)
            values = pc.list_flatten(vectors).to_numpy(zero_copy_only=False)
            matrix[start : start + len(batch_ids)] = values.reshape(len(batch_ids), -1)
            ids.extend(batch_ids)
            start += len(batch_ids)
    except (OSError, pa.ArrowException) as exc:
        message = f"unreadable Parquet data near row {start + 1} ({exc})"
        raise DataFormatError(path, message) from None
    if matrix is None:
        matrix = np.empty((0, dimension or 0), dtype=np.float32)
    return PrecomputedVectors(files, ids, matrix)


def _first_value(reader: Any, column: str) -> str:
    for batch in reader.iter_batches(batch_size=1, columns=[column]):
        if batch.num_rows:
            return _describe_value(batch.column(0)[0].as_py())
    return "none: the file has no rows"


def _check_nulls(
    path: Path, id_col: str, vec_col: str, ids: list[str | None], vectors: Any, start: int
) -> None:
    for i, value in enumerate(ids):
        if value is None:
            raise DataFormatError(path, "missing id", row=start + i + 1, field_name=id_col)
    if vectors.null_count:
        i = next(k for k, valid in enumerate(vectors.is_valid().to_pylist()) if not valid)
        raise DataFormatError(
            path, f"missing vector (id {ids[i]!r})", row=start + i + 1, field_name=vec_col
        )


def _check_lengths(
    path: Path,
    vec_col: str,
    lengths: np.ndarray,
    dimension: int,
    ids: list[str],
    start: int,
    declared: int | None,
) -> None:
    bad = np.flatnonzero(lengths != dimension)
    if not bad.size:
        return
    first = int(bad[0])
    rows = ", ".join(str(start + int(i) + 1) for i in bad[:5])
    more = f" (rows {rows}{', ...' if bad.size > 5 else ''})" if bad.size > 1 else ""
    raise DataFormatError(
        path,
        f"{int(lengths[first])} values, expected {dimension} (id {ids[first]!r}); "
        f"{bad.size} vector(s) of this batch have another length{more}",
        row=start + first + 1,
        field_name=vec_col,
    )


# --- .npy + ids ----------------------------------------------------------------------------
def _read_npy(files: VectorFiles) -> PrecomputedVectors:
    assert files.ids is not None
    path = files.vectors
    try:
        matrix = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataFormatError(path, f"unreadable .npy file ({exc})") from None
    if matrix.ndim != 2:
        raise DataFormatError(path, f"expected a 2-d array [n, d], got shape {tuple(matrix.shape)}")
    if matrix.dtype.kind not in "fiu":
        raise DataFormatError(
            path, f"expected numbers, got dtype {matrix.dtype}", row=1, field_name="vector"
        )
    ids = _read_ids(files.ids)
    if len(ids) != matrix.shape[0]:
        raise DataFormatError(
            files.ids,
            f"{len(ids)} ids but {path.name} has {matrix.shape[0]} rows (one id per row)",
        )
    # float32 stays memory-mapped: the embed stage copies only the rows, once, in dataset order.
    vectors = matrix if matrix.dtype == np.float32 else matrix.astype(np.float32)
    return PrecomputedVectors(files, ids, vectors)


def _read_ids(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(path, f"unreadable id file ({exc})") from None
    if path.suffix == ".json":
        try:
            ids = json.loads(text)
        except ValueError as exc:
            raise DataFormatError(path, f"invalid JSON ({exc})") from None
        if not isinstance(ids, list):
            raise DataFormatError(path, "expected a JSON list of ids")
        for row, value in enumerate(ids, start=1):
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise DataFormatError(
                    path,
                    f"ids must be strings or integers, got {_describe_value(value)}",
                    row=row,
                    field_name="id",
                )
        return [str(v) for v in ids]
    lines = text.splitlines()
    for row, line in enumerate(lines, start=1):
        if not line.strip():
            raise DataFormatError(path, "empty line (one id per line)", row=row, field_name="id")
    return lines
