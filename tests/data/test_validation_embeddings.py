"""Embedding suites: NaN, wrong dimension, wrong row count, non-unit norms, bad shapes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from components.validation import DataValidationError, ValidationConfig, validate_embeddings

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

DIM = 8


def _unit(n: int, d: int = DIM, seed: int = 0) -> np.ndarray:
    matrix = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


CORPUS_IDS = [f"d{i}" for i in range(6)]
QUERY_IDS = ["q0", "q1", "q2"]


def _validate(corpus: np.ndarray, queries: np.ndarray, **kwargs: object):
    return validate_embeddings(
        CORPUS_IDS, corpus, QUERY_IDS, queries, DIM, ValidationConfig(), None, **kwargs
    )


def test_good_embeddings_pass() -> None:
    report = _validate(_unit(6), _unit(3, seed=1))
    assert report.success, report.summary()
    report.raise_for_failures()
    assert [s.name for s in report.suites] == ["corpus_embeddings", "query_embeddings"]


def test_nan_and_inf_are_reported_with_row_and_position() -> None:
    corpus = _unit(6)
    corpus[2, 5] = np.nan
    corpus[4, 0] = np.inf
    report = _validate(corpus, _unit(3, seed=1), corpus_source="runs/x/corpus.npy")
    with pytest.raises(DataValidationError) as info:
        report.raise_for_failures()
    summary = str(info.value)
    assert "runs/x/corpus.npy, row 3, field 'vector': nan at dim 5" in summary
    assert "runs/x/corpus.npy, row 5, field 'vector': inf at dim 0" in summary
    assert "[id='d2']" in summary
    failing = report.suite("corpus_embeddings").failures
    assert [(o.column, o.unexpected_count) for o in failing] == [("is_finite", 2)]
    assert report.suite("query_embeddings").success


def test_wrong_dimension() -> None:
    report = _validate(_unit(6), _unit(3, d=DIM - 1, seed=1))
    summary = report.summary()
    assert not report.success
    assert "vectors have the expected dimension 8" in summary
    assert "query embeddings, row 1, field 'dim': 7 [id='q0']" in summary
    outcome = report.suite("query_embeddings").failures[0]
    assert (outcome.unexpected_count, outcome.element_count) == (3, 3)


def test_wrong_row_count_both_ways() -> None:
    report = _validate(_unit(4), _unit(4, seed=1))
    summary = report.summary()
    assert "corpus embeddings, row 5, field 'id': 'd4'" in summary  # id without a vector
    assert "corpus embeddings, row 6, field 'id': 'd5'" in summary
    assert "query embeddings, row 4, field 'id': None" in summary  # vector without an id
    assert "every id has a matrix row" in summary
    assert "every matrix row has an id" in summary


def test_non_unit_norms_and_zero_vectors() -> None:
    queries = _unit(3, seed=1) * 2.0
    report = _validate(_unit(6), queries)
    assert "query embeddings, row 2, field 'norm': 2 [id='q1']" in report.summary()
    assert _validate(_unit(6), queries, normalized=False).success
    queries[1] = 0.0
    report = _validate(_unit(6), queries, normalized=False)
    assert "query embeddings, row 2, field 'norm': 0 [id='q1']" in report.summary()


def test_wrong_dtype_and_duplicate_ids() -> None:
    report = validate_embeddings(
        ["a", "a"], _unit(2).astype(np.float64), QUERY_IDS, _unit(3, seed=1), DIM
    )
    summary = report.summary()
    assert "corpus embeddings, row 2, field 'id': 'a'" in summary
    assert "field 'dtype': 'float64'" in summary


def test_matrix_that_is_not_2d_is_a_failed_check() -> None:
    report = _validate(_unit(1)[0], _unit(3, seed=1))
    summary = report.summary()
    assert (
        "corpus embeddings, field 'matrix': expected a 2-D matrix [n, d], got shape (8,)" in summary
    )
    assert report.suite("query_embeddings").success


def test_expected_dim_must_be_positive() -> None:
    with pytest.raises(ValueError, match="expected_dim"):
        validate_embeddings(CORPUS_IDS, _unit(6), QUERY_IDS, _unit(3), 0)


def test_expected_ids_must_match_exactly() -> None:
    from components.validation import ExpectedIds

    corpus = ExpectedIds("data/x/corpus.jsonl", tuple(CORPUS_IDS))
    queries = ExpectedIds("data/x/queries.jsonl", tuple(QUERY_IDS))
    good = _validate(_unit(6), _unit(3, seed=1), corpus_expected=corpus, query_expected=queries)
    assert good.success, good.summary()
    assert [s.name for s in good.suites] == [
        "corpus_embeddings_coverage",
        "corpus_embeddings",
        "query_embeddings_coverage",
        "query_embeddings",
    ]
    # Vectors for d0..d4 and "dX" (extra) and a second "d0" (duplicate): d5 has none.
    ids = ["d0", "d1", "d2", "d3", "d4", "dX", "d0"]
    report = validate_embeddings(
        ids,
        _unit(7),
        QUERY_IDS,
        _unit(3, seed=1),
        DIM,
        ValidationConfig(),
        None,
        corpus_source="emb/corpus.parquet",
        corpus_expected=corpus,
        query_expected=queries,
    )
    summary = report.summary()
    assert "data/x/corpus.jsonl, row 6, field 'id': 'd5'" in summary
    assert "every id of data/x/corpus.jsonl has a vector in emb/corpus.parquet" in summary
    assert "emb/corpus.parquet, row 6, field 'id': 'dX'" in summary
    assert "every id is in data/x/corpus.jsonl (no extra ids)" in summary
    assert "ids are unique" in summary
    assert report.suite("query_embeddings").success
    assert report.suite("query_embeddings_coverage").success
