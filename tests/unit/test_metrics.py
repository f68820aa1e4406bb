"""nDCG, Recall and MRR against rankings computed by hand; exact cosine retrieval."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from components.metrics import Labels, cosine_top_k, ranking_metrics, relevance_labels


def test_single_query_hand_computed() -> None:
    # Ranking: d3, d1, d0, d2; relevant: d0 (grade 2) and d1 (grade 1).
    ranked = np.array([[3, 1, 0, 2]])
    relevance = np.array([[2, 1, 0, 0]])
    dcg = 1 / math.log2(3) + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    m = ranking_metrics(ranked, relevance, ndcg_k=10, recall_k=2, mrr_k=10)
    assert m["ndcg"] == pytest.approx(dcg / idcg)
    assert m["recall"] == pytest.approx(0.5)  # only d1 in the top 2
    assert m["mrr"] == pytest.approx(0.5)  # first relevant at rank 2


def test_cutoffs_and_averaging_over_queries() -> None:
    ranked = np.array([[0, 1, 2], [2, 1, 0]])
    relevance = np.array([[1, 0, 0], [1, 0, 0]])
    m = ranking_metrics(ranked, relevance, ndcg_k=2, recall_k=2, mrr_k=2)
    assert m["ndcg"] == pytest.approx(0.5)  # 1.0 and 0.0 (relevant doc at rank 3 > k)
    assert m["recall"] == pytest.approx(0.5)
    assert m["mrr"] == pytest.approx(0.5)


def test_queries_without_relevant_documents_are_skipped() -> None:
    ranked = np.array([[0, 1], [0, 1]])
    relevance = np.array([[1, 0], [0, 0]])
    assert ranking_metrics(ranked, relevance, 2, 2, 2)["ndcg"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no query has a relevant document"):
        ranking_metrics(ranked[1:], relevance[1:], 2, 2, 2)


def test_cosine_top_k_is_exact_and_best_first() -> None:
    docs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    queries = torch.tensor([[2.0, 0.1]])
    assert cosine_top_k(queries, docs, 3).tolist() == [[0, 2, 1]]


def test_relevance_labels_reject_unknown_ids() -> None:
    qrels = pd.DataFrame({"query_id": ["q1"], "doc_id": ["nope"], "score": [1]})
    with pytest.raises(ValueError, match="unknown corpus id.*nope"):
        relevance_labels(qrels, ["q1"], ["d1"])
    qrels = pd.DataFrame({"query_id": ["q9"], "doc_id": ["d1"], "score": [1]})
    with pytest.raises(ValueError, match="unknown query id.*q9"):
        relevance_labels(qrels, ["q1"], ["d1"])


def test_relevance_labels_keep_labelled_queries_and_grades() -> None:
    qrels = pd.DataFrame(
        {"query_id": ["q2", "q2", "q1"], "doc_id": ["d1", "d0", "d0"], "score": [2, 1, 0]}
    )
    rows, labels = relevance_labels(qrels, ["q1", "q2"], ["d0", "d1"])
    assert rows.tolist() == [1]  # q1 has only a 0 label
    assert len(labels) == 1 and labels.row(0) == [(0, 1), (1, 2)]
    assert labels.gains(np.array([[1, 0]])).tolist() == [[2.0, 1.0]]


def test_labels_refuse_bad_indices() -> None:
    with pytest.raises(ValueError, match=r"query row 0: a document index is outside \[0, 3\)"):
        Labels([[(3, 1)]], n_docs=3)
    with pytest.raises(ValueError, match="query row 1: a document is labelled twice"):
        Labels([[], [(1, 1), (1, 2)]], n_docs=3)
    with pytest.raises(ValueError, match="ranked has 2 queries but the labels have 1"):
        Labels([[(0, 1)]], n_docs=3).gains(np.zeros((2, 2), dtype=np.int64))


def _dense_reference(ranked: np.ndarray, relevance: np.ndarray, k: int, r: int) -> dict:
    """The previous implementation, over a dense [Q, N] matrix (what Labels replaced)."""
    gains = np.take_along_axis(relevance, ranked, axis=1).astype(np.float64)
    counts = (relevance > 0).sum(axis=1)
    keep = counts > 0
    gains, relevance, counts = gains[keep], relevance[keep], counts[keep]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (gains[:, :k] * discounts[: min(k, gains.shape[1])]).sum(axis=1)
    ideal = -np.sort(-relevance, axis=1)[:, :k].astype(np.float64)
    ndcg = dcg / (ideal * discounts[: ideal.shape[1]]).sum(axis=1)
    recall = (gains[:, :r] > 0).sum(axis=1) / counts
    hits = gains[:, :k] > 0
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    mrr = np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)
    return {"ndcg": ndcg.mean(), "recall": recall.mean(), "mrr": mrr.mean()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_labels_score_exactly_as_the_dense_matrix(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_queries, n_docs = 40, 300
    relevance = np.where(rng.random((n_queries, n_docs)) < 0.02, rng.integers(1, 4, (40, 300)), 0)
    relevance[3] = 0  # a query without a relevant document is skipped
    ranked = np.argsort(-rng.random((n_queries, n_docs)), axis=1)[:, :50]
    expected = _dense_reference(ranked, relevance, k=10, r=50)
    for given in (relevance, Labels.from_dense(relevance)):
        got = ranking_metrics(ranked, given, ndcg_k=10, recall_k=50, mrr_k=10)
        assert got == pytest.approx(expected, abs=1e-12)


def test_metrics_memory_grows_with_labels_not_queries_times_documents() -> None:
    # Issue #9: the dense [queries x corpus] int64 matrix was 800 MB here (80 GB at 10k x 1M).
    import tracemalloc

    n_queries, n_docs = 1000, 100_000
    qrels = pd.DataFrame(
        {
            "query_id": [f"q{i}" for i in range(n_queries) for _ in range(3)],
            "doc_id": [
                f"d{(i * 97 + j * 31) % n_docs}" for i in range(n_queries) for j in range(3)
            ],
            "score": [1, 2, 1] * n_queries,
        }
    )
    query_ids = [f"q{i}" for i in range(n_queries)]
    doc_ids = [f"d{i}" for i in range(n_docs)]
    ranked = np.tile(np.arange(100, dtype=np.int64), (n_queries, 1))
    tracemalloc.start()
    try:
        rows, labels = relevance_labels(qrels, query_ids, doc_ids)
        values = ranking_metrics(ranked, labels, ndcg_k=10, recall_k=100, mrr_k=10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(rows) == n_queries and 0 <= values["ndcg"] <= 1
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.0f} MiB"
