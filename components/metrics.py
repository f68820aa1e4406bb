"""Exact cosine retrieval and the ranking metrics nDCG@k, Recall@k and MRR@k.

Conventions follow trec_eval / BEIR: gains are the graded labels (linear), the ideal DCG
uses all judged relevant documents of the query, documents with score 0 are not relevant,
and only queries with at least one relevant document are averaged. Labels are kept sparse
(:class:`Labels`): nothing here allocates a ``[queries × documents]`` array.

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


class Labels:
    """Graded relevance labels of Q queries over N documents, stored sparsely.

    Only the positive labels are kept (CSR-like: per query its documents and grades), so
    memory grows with the number of labels, never with ``Q × N``: at 10k queries and 1M
    documents a dense int64 matrix would take 80 GB, these labels a few hundred kB.

    Args:
        rows: per query, its ``(document index, grade)`` pairs; grades <= 0 are dropped.
        n_docs: N, the number of documents the indices point into.

    Raises:
        ValueError: a document index outside ``[0, n_docs)``, or one listed twice for a query.

    Example:
        >>> labels = Labels([[(0, 2), (3, 1)], []], n_docs=4)
        >>> labels.gains(np.array([[3, 1], [0, 2]])).tolist()
        [[1.0, 0.0], [0.0, 0.0]]
    """

    def __init__(self, rows: list[list[tuple[int, int]]], n_docs: int) -> None:
        self.n_docs = int(n_docs)
        self._n_queries = len(rows)
        keys: list[int] = []
        grades: list[int] = []
        self.counts = np.zeros(len(rows), dtype=np.int64)
        for row, pairs in enumerate(rows):
            kept = [(int(doc), int(grade)) for doc, grade in pairs if grade > 0]
            docs = [doc for doc, _ in kept]
            if any(doc < 0 or doc >= self.n_docs for doc in docs):
                raise ValueError(f"query row {row}: a document index is outside [0, {n_docs})")
            if len(set(docs)) != len(docs):
                raise ValueError(f"query row {row}: a document is labelled twice")
            self.counts[row] = len(kept)
            keys.extend(row * self.n_docs + doc for doc in docs)
            grades.extend(grade for _, grade in kept)
        order = np.argsort(np.asarray(keys, dtype=np.int64), kind="stable")
        self._keys = np.asarray(keys, dtype=np.int64)[order]
        self._grades = np.asarray(grades, dtype=np.int64)[order]
        self._ideal: dict[int, np.ndarray] = {}

    @classmethod
    def from_dense(cls, matrix: np.ndarray) -> Labels:
        """The labels of a dense ``[Q, N]`` matrix (its positive entries)."""
        matrix = np.asarray(matrix)
        rows = [
            [(int(j), int(matrix[r, j])) for j in np.flatnonzero(matrix[r] > 0)]
            for r in range(matrix.shape[0])
        ]
        return cls(rows, matrix.shape[1])

    def __len__(self) -> int:
        return self._n_queries

    def row(self, r: int) -> list[tuple[int, int]]:
        """Query ``r``'s ``(document index, grade)`` pairs, by document index."""
        lo, hi = np.searchsorted(self._keys, [r * self.n_docs, (r + 1) * self.n_docs])
        return [
            (int(key - r * self.n_docs), int(grade))
            for key, grade in zip(self._keys[lo:hi], self._grades[lo:hi], strict=True)
        ]

    def gains(self, ranked: np.ndarray) -> np.ndarray:
        """``[Q, K]`` grades of the ranked documents (0 where unlabelled), float64."""
        if ranked.shape[0] != self._n_queries:
            raise ValueError(
                f"ranked has {ranked.shape[0]} queries but the labels have {self._n_queries}"
            )
        keys = np.arange(self._n_queries, dtype=np.int64)[:, None] * self.n_docs + ranked
        if not len(self._keys):
            return np.zeros(ranked.shape, dtype=np.float64)
        at = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        return np.where(self._keys[at] == keys, self._grades[at], 0).astype(np.float64)

    def ideal_dcg(self, k: int) -> np.ndarray:
        """Per query, the DCG@k of its grades sorted best first (computed once per k: the
        same labels are scored at every prefix size and every held-out evaluation)."""
        if k not in self._ideal:
            self._ideal[k] = self._compute_ideal_dcg(k)
        return self._ideal[k]

    def _compute_ideal_dcg(self, k: int) -> np.ndarray:
        discounts = 1.0 / np.log2(np.arange(2, k + 2))
        ideal = np.zeros(self._n_queries)
        starts = np.concatenate([[0], np.cumsum(self.counts)])
        by_query = np.repeat(np.arange(self._n_queries), self.counts)
        grades = self._grades[np.lexsort((-self._grades, by_query))]
        for r in np.flatnonzero(self.counts):
            top = grades[starts[r] : starts[r + 1]][:k].astype(np.float64)
            ideal[r] = (top * discounts[: len(top)]).sum()
        return ideal


def relevance_labels(
    qrels: pd.DataFrame, query_ids: list[str], doc_ids: list[str]
) -> tuple[np.ndarray, Labels]:
    """The positive labels of ``qrels`` as :class:`Labels`, one row per labelled query.

    Returns:
        (row indices into ``query_ids`` of the queries with a positive label, their labels).

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
    pairs: list[dict[int, int]] = [{} for _ in rows]
    for qid, did, score in labelled[["query_id", "doc_id", "score"]].itertuples(
        index=False, name=None
    ):
        pairs[row_of[query_index[qid]]][doc_index[did]] = int(score)  # the last one wins
    return np.asarray(rows, dtype=np.int64), Labels(
        [sorted(row.items()) for row in pairs], len(doc_ids)
    )


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
    relevance: Labels | np.ndarray,
    ndcg_k: int = 10,
    recall_k: int = 100,
    mrr_k: int = 10,
) -> dict[str, float]:
    """Mean nDCG@k, Recall@k and MRR@k over queries with at least one relevant document.

    Args:
        ranked: ``[Q, K]`` document indices per query, best first (K >= every cut-off that
            should be exact; shorter lists are scored as they are).
        relevance: the graded labels, row-aligned with ``ranked``: :class:`Labels`, or a
            dense ``[Q, N]`` matrix (small cases; converted).
    """
    labels = relevance if isinstance(relevance, Labels) else Labels.from_dense(relevance)
    if ranked.shape[0] != len(labels):
        raise ValueError(f"ranked has {ranked.shape[0]} queries but relevance has {len(labels)}")
    keep = labels.counts > 0
    if not keep.any():
        raise ValueError("no query has a relevant document: nothing to evaluate")
    gains = labels.gains(ranked)[keep]  # [Q, K]
    relevant_counts = labels.counts[keep]

    discounts = 1.0 / np.log2(np.arange(2, ndcg_k + 2))
    top = gains[:, :ndcg_k]
    dcg = (top * discounts[: top.shape[1]]).sum(axis=1)
    ndcg = dcg / labels.ideal_dcg(ndcg_k)[keep]

    recall = (gains[:, :recall_k] > 0).sum(axis=1) / relevant_counts

    hits = gains[:, :mrr_k] > 0
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    mrr = np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)
    return {"ndcg": float(ndcg.mean()), "recall": float(recall.mean()), "mrr": float(mrr.mean())}
