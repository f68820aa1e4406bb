"""Stage 2's held-out evaluation (HeldoutRetrieval): exact within its bounds, bounded beyond."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch.nn import functional as F

from components.adaptor import MatryoshkaAdaptor
from components.config import AdaptorConfig, TrainConfig
from components.training import HeldoutRetrieval, _split, mean_ndcg_over_prefixes

DIMS = (4, 8, 16)


def trained_like_adaptor(seed: int = 0) -> MatryoshkaAdaptor:
    """An adaptor with a non-zero residual, so adapted vectors differ from the inputs."""
    torch.manual_seed(seed)
    adaptor = MatryoshkaAdaptor(16, AdaptorConfig(use_rotation=False))
    with torch.no_grad():
        for parameter in adaptor.parameters():
            parameter.normal_(0, 0.3)
    return adaptor


def case(n_docs: int = 200, n_queries: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    corpus = F.normalize(torch.randn(n_docs, 16, generator=g), dim=-1)
    queries = F.normalize(corpus[:n_queries] + 0.3 * torch.randn(n_queries, 16, generator=g), -1)
    # graded labels, several per query, some shared between queries
    labels = [
        [(q, 2), ((q * 7 + 3) % n_docs, 1), ((q * 13 + 5) % n_docs, 1)] for q in range(n_queries)
    ]
    relevance = np.zeros((n_queries, n_docs), dtype=np.int64)
    for row, query in enumerate(labels):
        for doc, score in query:
            relevance[row, doc] = score
    return corpus, queries, labels, relevance


def test_within_its_bound_the_score_is_exactly_full_corpus_ndcg() -> None:
    corpus, queries, labels, relevance = case()
    adaptor = trained_like_adaptor()
    held = HeldoutRetrieval(queries, labels, corpus, DIMS, 200, torch.Generator())
    assert held.n_candidates == 200 and held.documents is corpus
    expected = mean_ndcg_over_prefixes(adaptor, queries, corpus, relevance, DIMS)
    assert held(adaptor) == pytest.approx(expected, abs=1e-12)
    assert 0.0 < expected < 1.0  # a case where the ranking is neither perfect nor empty


def test_beyond_its_bound_it_retrieves_from_the_labelled_plus_a_fixed_sample() -> None:
    corpus, queries, labels, relevance = case(n_docs=500)
    adaptor = trained_like_adaptor(1)
    held = HeldoutRetrieval(queries, labels, corpus, DIMS, 60, torch.Generator().manual_seed(0))
    assert held.n_candidates == 60 and held.documents.shape == (60, 16)
    # every labelled document is a candidate; the score is full nDCG on the candidates
    rows = [int(torch.nonzero((corpus == doc).all(1))[0]) for doc in held.documents]
    assert {doc for query in labels for doc, _ in query} <= set(rows)
    expected = mean_ndcg_over_prefixes(adaptor, queries, corpus[rows], relevance[:, rows], DIMS)
    assert held(adaptor) == pytest.approx(expected, abs=1e-12)
    again = HeldoutRetrieval(queries, labels, corpus, DIMS, 60, torch.Generator().manual_seed(0))
    assert torch.equal(again.documents, held.documents)  # seeded: the same sample each run


def test_the_held_out_query_split_is_capped_and_the_rest_trains() -> None:
    fit, held = _split(1000, 0.15, torch.Generator().manual_seed(0), most=40)
    assert len(held) == 40 and len(fit) == 960
    assert set(fit.tolist()).isdisjoint(held.tolist())
    uncapped_fit, uncapped = _split(1000, 0.15, torch.Generator().manual_seed(0))
    assert len(uncapped) == 150
    # a cap above the fraction changes nothing
    assert torch.equal(_split(1000, 0.15, torch.Generator().manual_seed(0), most=1000)[1], uncapped)


def test_bounds_are_validated_with_the_field_named() -> None:
    with pytest.raises(
        ValidationError, match=r"heldout_max_documents\n.*greater than or equal to 10"
    ):
        TrainConfig(heldout_max_documents=5)
    with pytest.raises(ValidationError, match=r"heldout_max_queries\n.*greater than or equal to 2"):
        TrainConfig(heldout_max_queries=1)
    assert (
        TrainConfig(heldout_max_queries=None, heldout_max_documents=None).heldout_max_queries
        is None
    )
