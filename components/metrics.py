"""Exact cosine retrieval and the ranking metrics nDCG@k, Recall@k and MRR@k.

Conventions follow trec_eval / BEIR: gains are the graded labels (linear), the ideal DCG
uses all judged relevant documents of the query, documents with score 0 are not relevant,
and only queries with at least one relevant document are averaged.

Example:
    >>> import numpy as np
    >>> from components.metrics import ranking_metrics
    >>> ranked = np.array([[2, 0, 1]])            # query 0 ranks doc 2 first
    >>> relevance = np.array([[1, 0, 0]])         # only doc 0 is relevant
    >>> m = ranking_metrics(ranked, relevance, ndcg_k=3, recall_k=3, mrr_k=3)
    >>> round(m["mrr"], 3), round(m["ndcg"], 3)
    (0.5, 0.631)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F


def relevance_matrix(
    qrels: pd.DataFrame, query_ids: list[str], doc_ids: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Dense ``[n_labelled_queries, n_docs]`` int matrix of graded labels.

    Returns:
        (row indices into ``query_ids`` of the labelled queries, the relevance matrix).

    Raises:
        ValueError: a label points at a query or document id that is not in the matrices.
    """
    query_index = {qid: i for i, qid in enumerate(query_ids)}
    doc_index = {did: i for i, did in enumerate(doc_ids)}
    unknown_queries = sorted(set(qrels["query_id"]) - query_index.keys())
    if unknown_queries:
        raise ValueError(
            f"qrels point at {len(unknown_queries)} unknown query id(s), e.g. {unknown_queries[:5]}"
        )
    unknown_docs = sorted(set(qrels["doc_id"]) - doc_index.keys())
    if unknown_docs:
        raise ValueError(
            f"qrels point at {len(unknown_docs)} unknown corpus id(s), e.g. {unknown_docs[:5]}"
        )
    labelled = qrels[qrels["score"] > 0]
    rows = sorted({query_index[q] for q in labelled["query_id"]})
    row_of = {q: r for r, q in enumerate(rows)}
    matrix = np.zeros((len(rows), len(doc_ids)), dtype=np.int64)
    for qid, did, score in labelled[["query_id", "doc_id", "score"]].itertuples(
        index=False, name=None
    ):
        matrix[row_of[query_index[qid]], doc_index[did]] = score
    return np.asarray(rows, dtype=np.int64), matrix


@torch.no_grad()
def cosine_top_k(
    queries: torch.Tensor, documents: torch.Tensor, k: int, chunk_size: int = 1024
) -> np.ndarray:
    """Indices of the ``k`` most cosine-similar documents per query, best first (exact)."""
    k = min(k, documents.shape[0])
    docs = F.normalize(documents.float(), dim=-1)
    out = []
    for chunk in queries.float().split(chunk_size):
        scores = F.normalize(chunk, dim=-1) @ docs.T
        out.append(torch.topk(scores, k, dim=1).indices.cpu())
    return torch.cat(out).numpy()


def ranking_metrics(
    ranked: np.ndarray,
    relevance: np.ndarray,
    ndcg_k: int = 10,
    recall_k: int = 100,
    mrr_k: int = 10,
) -> dict[str, float]:
    """Mean nDCG@k, Recall@k and MRR@k over queries with at least one relevant document.

    Args:
        ranked: ``[Q, K]`` document indices per query, best first (K >= every cut-off that
            should be exact; shorter lists are scored as they are).
        relevance: ``[Q, N]`` graded labels, row-aligned with ``ranked``.
    """
    if ranked.shape[0] != relevance.shape[0]:
        raise ValueError(
            f"ranked has {ranked.shape[0]} queries but relevance has {relevance.shape[0]}"
        )
    gains = np.take_along_axis(relevance, ranked, axis=1).astype(np.float64)  # [Q, K]
    relevant_counts = (relevance > 0).sum(axis=1)
    keep = relevant_counts > 0
    if not keep.any():
        raise ValueError("no query has a relevant document: nothing to evaluate")
    gains, relevance, relevant_counts = gains[keep], relevance[keep], relevant_counts[keep]

    discounts = 1.0 / np.log2(np.arange(2, ndcg_k + 2))
    top = gains[:, :ndcg_k]
    dcg = (top * discounts[: top.shape[1]]).sum(axis=1)
    ideal = -np.sort(-relevance, axis=1)[:, :ndcg_k].astype(np.float64)
    idcg = (ideal * discounts[: ideal.shape[1]]).sum(axis=1)
    ndcg = dcg / idcg

    recall = (gains[:, :recall_k] > 0).sum(axis=1) / relevant_counts

    hits = gains[:, :mrr_k] > 0
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    mrr = np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)
    return {"ndcg": float(ndcg.mean()), "recall": float(recall.mean()), "mrr": float(mrr.mean())}
