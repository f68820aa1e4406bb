"""Synthetic retrieval sets with planted structure, shaped like the hard cases users report.

Real embeddings are rarely as kind as SciFact: some corpora label tens of graded positives
per query, some have only a few dozen labelled queries, and in some the leading principal
directions carry topic-independent variation (boilerplate, language, length) so that PCA and
truncation keep the wrong coordinates first. :func:`planted_retrieval` builds such a set
with a known answer, so that tests and benchmarks can check a method against the
training-free baselines where those are weakest, without tuning to one real dataset.

Construction: documents belong to topics; a topic is a centre in an ``signal_dim``-d
subspace spread over all d coordinates (a random orthogonal basis). Each document and query
is its topic's centre plus within-topic spread, plus ``noise_scale``-strong variation in
``noise_dim`` other directions (the leading principal directions when ``noise_scale`` is
large), plus isotropic noise. A query's graded positives are the ``positives`` documents of
its topic nearest to it (by default in the signal subspace, so that the noise directions
carry no relevance at all): grade 3 for the first
``positives // 4``, 2 for the next ``positives // 3``, 1 for the rest.

Example:
    >>> data = planted_retrieval(n_docs=120, n_train=20, n_test=10, positives=4, d=32,
    ...                          signal_dim=8, noise_dim=4, seed=0)
    >>> data.corpus.shape, data.train["query_id"].nunique(), sorted(set(data.train["score"]))
    (torch.Size([120, 32]), 20, [1, 2, 3])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd
import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class SyntheticRetrieval:
    """Unit-norm corpus and query embeddings, their ids and train/test labels.

    Attributes:
        corpus: ``[n_docs, d]`` document embeddings.
        corpus_ids: ``d0 …`` row-aligned with ``corpus``.
        queries: ``[n_train + n_test, d]`` query embeddings (training queries first).
        query_ids: ``q0 …`` row-aligned with ``queries``.
        train: labels of the training queries (``query_id``, ``doc_id``, ``score``).
        test: labels of the test queries.
    """

    corpus: torch.Tensor
    corpus_ids: list[str]
    queries: torch.Tensor
    query_ids: list[str]
    train: pd.DataFrame
    test: pd.DataFrame


def planted_retrieval(
    n_docs: int = 3600,
    n_train: int = 2600,
    n_test: int = 400,
    positives: int = 42,
    d: int = 384,
    signal_dim: int = 48,
    noise_dim: int = 16,
    noise_scale: float = 2.5,
    docs_per_topic: int = 60,
    spread: float = 0.7,
    isotropic: float = 0.3,
    grade_by: Literal["signal", "embedding"] = "signal",
    seed: int = 0,
) -> SyntheticRetrieval:
    """A planted-topic retrieval set (see the module docstring for the construction).

    Args:
        n_docs: documents.
        n_train, n_test: training and test queries.
        positives: graded positives per query (at most ``docs_per_topic``).
        d: embedding dimension.
        signal_dim: dimension of the subspace that carries the topics.
        noise_dim: directions of topic-independent variation.
        noise_scale: its standard deviation (the topic centres have 1): above ``spread``,
            these directions lead the corpus' principal components.
        docs_per_topic: documents per topic (``n_docs // docs_per_topic`` topics).
        spread: within-topic standard deviation in the signal subspace.
        isotropic: standard deviation of the noise added to every coordinate.
        grade_by: rank a topic's documents for a query by cosine in the signal subspace
            (``signal``: the noise is irrelevant by construction) or of the embeddings
            (``embedding``: what a labeller judging the embedded texts would see).
        seed: seeds everything.

    Raises:
        ValueError: ``positives`` above ``docs_per_topic``, or the subspaces exceed ``d``.
    """
    if positives > docs_per_topic:
        raise ValueError(
            f"positives ({positives}) must be at most docs_per_topic ({docs_per_topic})"
        )
    if signal_dim + noise_dim > d:
        raise ValueError(
            f"signal_dim + noise_dim ({signal_dim + noise_dim}) must be at most d ({d})"
        )
    if min(n_docs, n_train, n_test, positives) < 1:
        raise ValueError("n_docs, n_train, n_test and positives must be at least 1")
    g = torch.Generator().manual_seed(seed)
    n_topics = max(1, n_docs // docs_per_topic)
    basis = torch.linalg.qr(torch.randn(d, d, generator=g))[0]
    signal_dirs = basis[:, :signal_dim]
    noise_dirs = basis[:, signal_dim : signal_dim + noise_dim]
    centres = torch.randn(n_topics, signal_dim, generator=g)

    def embed(topics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(topics)
        signal = centres[topics] + spread * torch.randn(n, signal_dim, generator=g)
        vectors = signal @ signal_dirs.T
        vectors += noise_scale * torch.randn(n, noise_dim, generator=g) @ noise_dirs.T
        vectors += isotropic * torch.randn(n, d, generator=g)
        return F.normalize(vectors, dim=-1), signal

    topic_of_doc = torch.arange(n_docs) % n_topics
    docs, doc_signal = embed(topic_of_doc)
    n_queries = n_train + n_test
    topic_of_query = torch.randint(n_topics, (n_queries,), generator=g)
    queries, query_signal = embed(topic_of_query)
    doc_ids = [f"d{i}" for i in range(n_docs)]
    query_ids = [f"q{i}" for i in range(n_queries)]
    top_grade, mid_grade = positives // 4, positives // 4 + positives // 3
    rows = []
    for q in range(n_queries):
        members = torch.nonzero(topic_of_doc == topic_of_query[q]).squeeze(1)
        if grade_by == "signal":
            closeness = F.normalize(doc_signal[members], dim=-1) @ F.normalize(
                query_signal[q], dim=0
            )
        else:
            closeness = docs[members] @ queries[q]
        chosen = members[torch.argsort(closeness, descending=True)][:positives]
        for rank, doc in enumerate(chosen.tolist()):
            grade = 3 if rank < top_grade else 2 if rank < mid_grade else 1
            rows.append((query_ids[q], doc_ids[doc], grade))
    qrels = pd.DataFrame(rows, columns=["query_id", "doc_id", "score"])
    is_train = qrels["query_id"].isin(set(query_ids[:n_train]))
    return SyntheticRetrieval(
        corpus=docs,
        corpus_ids=doc_ids,
        queries=queries,
        query_ids=query_ids,
        train=qrels[is_train].reset_index(drop=True),
        test=qrels[~is_train].reset_index(drop=True),
    )
