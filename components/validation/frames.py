"""The tables the expectation suites run on: loaded data plus a row column and helper columns.

Checks GX cannot express on one column (an id existing in another table, a query having a
positive label, a vector's norm or finiteness) become helper columns here, so every check is an
ordinary GX column expectation and shows up uniformly in the GX results and Data Docs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from components.data import RetrievalDataset

ROW = "row"


def text_frame(frame: pd.DataFrame, rows: tuple[int, ...], columns: list[str]) -> pd.DataFrame:
    """``frame[columns]`` with a leading 1-based ``row`` column (file line numbers)."""
    out = frame[columns].reset_index(drop=True).copy()
    out.insert(0, ROW, np.asarray(rows, dtype=np.int64))
    return out


def qrels_frame(
    dataset: RetrievalDataset, split: str, rows: tuple[int, ...], positive_min_score: int
) -> pd.DataFrame:
    """Labels of one split with helper columns.

    Helper columns: ``query_id_known`` / ``doc_id_known`` (the id exists in the queries /
    corpus) and ``query_has_positive`` (the row's query has a label >= positive_min_score).
    """
    frame = text_frame(dataset.split(split), rows, ["query_id", "doc_id", "score"])
    frame["query_id_known"] = frame["query_id"].isin(set(dataset.queries["id"])).astype(bool)
    frame["doc_id_known"] = frame["doc_id"].isin(set(dataset.corpus["id"])).astype(bool)
    if frame.empty:
        frame["query_has_positive"] = pd.Series(dtype=bool)
    else:
        best = frame.groupby("query_id", sort=False)["score"].transform("max")
        frame["query_has_positive"] = (best >= positive_min_score).astype(bool)
    return frame


def embedding_frame(ids: list[str] | tuple[str, ...], matrix: np.ndarray) -> pd.DataFrame:
    """One row per id and per matrix row (the longer of the two), with helper columns.

    Columns: ``row`` (1-based: ``matrix[row - 1]``), ``id`` (None for matrix rows without
    an id), ``has_vector`` (False for ids without a matrix row), ``dim``, ``dtype``,
    ``is_finite``, ``nonfinite`` (where the first NaN/inf is) and ``norm`` (L2; NaN when
    not finite). Helper values are None on rows without a vector, which GX counts as
    missing rather than unexpected.

    Raises:
        ValueError: the matrix is not two-dimensional.
    """
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-D matrix [n, d], got shape {tuple(matrix.shape)}")
    n_vectors, dim = matrix.shape
    n_ids = len(ids)
    length = max(n_vectors, n_ids)
    pad = length - n_vectors
    # Non-float matrices are checked as float64; the dtype expectation reports them.
    values = matrix if matrix.dtype.kind == "f" else matrix.astype(np.float64)
    bad = ~np.isfinite(values)
    finite_rows = ~bad.any(axis=1)
    bad_counts = bad.sum(axis=1)
    first_bad = bad.argmax(axis=1)
    norms = np.full(n_vectors, np.nan)
    if finite_rows.any():
        good = values[finite_rows]
        norms[finite_rows] = np.sqrt(np.einsum("ij,ij->i", good, good, dtype=np.float64))
    details: list[str | None] = [""] * n_vectors
    for i in np.flatnonzero(~finite_rows):
        j = int(first_bad[i])
        details[i] = (
            f"{values[i, j]} at dim {j} ({int(bad_counts[i])} non-finite "
            f"value{'s' if bad_counts[i] != 1 else ''})"
        )
    id_values = [str(x) for x in ids] + [None] * (length - n_ids)
    return pd.DataFrame(
        {
            ROW: np.arange(1, length + 1, dtype=np.int64),
            "id": pd.Series(id_values, dtype=object),
            "has_vector": np.concatenate([np.ones(n_vectors, bool), np.zeros(pad, bool)]),
            "dim": pd.Series([dim] * n_vectors + [None] * pad, dtype=object),
            "dtype": pd.Series([str(matrix.dtype)] * n_vectors + [None] * pad, dtype=object),
            "is_finite": pd.Series(list(finite_rows) + [None] * pad, dtype=object),
            "nonfinite": pd.Series(details + [None] * pad, dtype=object),
            "norm": np.concatenate([norms, np.full(pad, np.nan)]),
        }
    )


def coverage_frame(dataset_ids: list[str], vector_ids: set[str]) -> pd.DataFrame:
    """One row per dataset id (``row``: its position in the table, 1-based) with
    ``has_vector``: whether the vector file holds a vector for it."""
    return pd.DataFrame(
        {
            ROW: np.arange(1, len(dataset_ids) + 1, dtype=np.int64),
            "id": pd.Series(dataset_ids, dtype=object),
            "has_vector": np.fromiter(
                (i in vector_ids for i in dataset_ids), dtype=bool, count=len(dataset_ids)
            ),
        }
    )


def corpus_frame(dataset: RetrievalDataset, rows: tuple[int, ...]) -> pd.DataFrame:
    return text_frame(dataset.corpus, rows, ["id", "title", "text"])


def queries_frame(dataset: RetrievalDataset, rows: tuple[int, ...]) -> pd.DataFrame:
    return text_frame(dataset.queries, rows, ["id", "text"])
