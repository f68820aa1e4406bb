"""nDCG, Recall and MRR against rankings computed by hand; exact cosine retrieval."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from components.metrics import cosine_top_k, ranking_metrics, relevance_matrix


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


def test_relevance_matrix_rejects_unknown_ids() -> None:
    qrels = pd.DataFrame({"query_id": ["q1"], "doc_id": ["nope"], "score": [1]})
    with pytest.raises(ValueError, match="unknown corpus id.*nope"):
        relevance_matrix(qrels, ["q1"], ["d1"])
    qrels = pd.DataFrame({"query_id": ["q9"], "doc_id": ["d1"], "score": [1]})
    with pytest.raises(ValueError, match="unknown query id.*q9"):
        relevance_matrix(qrels, ["q1"], ["d1"])


def test_relevance_matrix_keeps_labelled_queries_and_grades() -> None:
    qrels = pd.DataFrame(
        {"query_id": ["q2", "q2", "q1"], "doc_id": ["d1", "d0", "d0"], "score": [2, 1, 0]}
    )
    rows, matrix = relevance_matrix(qrels, ["q1", "q2"], ["d0", "d1"])
    assert rows.tolist() == [1]  # q1 has only a 0 label
    assert matrix.tolist() == [[1, 2]]
