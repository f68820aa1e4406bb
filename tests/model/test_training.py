"""Model-behaviour tests: training on synthetic embeddings with planted low-rank structure."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from components.baselines import Truncation
from components.config import (
    AdaptorConfig,
    EvaluationConfig,
    LossConfig,
    MethodConfig,
    OptimConfig,
    TrainConfig,
)
from components.evaluation import evaluate_methods
from components.training import nearest_neighbours, train_adaptor, train_unsupervised

D, SIGNAL = 16, 4


def planted(n_docs: int = 300, n_queries: int = 60, seed: int = 0):
    """Documents whose identity lives in the LAST coordinates, first ones are weak noise.

    Truncation to the first 4 coordinates sees mostly noise; an adaptor that moves the signal
    forward retrieves well at m=4. Queries are noisy copies of the first documents.
    """
    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(n_docs, SIGNAL, generator=g)
    noise = 0.15 * torch.randn(n_docs, D - SIGNAL, generator=g)
    docs = F.normalize(torch.cat([noise, latent], dim=1), dim=-1)
    queries = F.normalize(docs[:n_queries] + 0.05 * torch.randn(n_queries, D, generator=g), dim=-1)
    doc_ids = [f"d{i}" for i in range(n_docs)]
    query_ids = [f"q{i}" for i in range(n_queries)]
    qrels = pd.DataFrame({"query_id": query_ids, "doc_id": doc_ids[:n_queries], "score": 1})
    return docs, doc_ids, queries, query_ids, qrels


def fast_config(use_rotation: bool = False, seed: int = 0, device: str = "cpu") -> MethodConfig:
    stage = OptimConfig(
        learning_rate=3e-3, batch_size=64, max_iterations=300, patience=300, eval_every=25
    )
    return MethodConfig(
        adaptor=AdaptorConfig(use_rotation=use_rotation),
        loss=LossConfig(prefix_dims=(4, 8, 16), top_k=5),
        train=TrainConfig(unsupervised=stage, supervised=stage, seed=seed, device=device),
    )


def test_unsupervised_training_lowers_loss_and_beats_truncation_at_low_m() -> None:
    docs, doc_ids, queries, query_ids, qrels = planted()
    adaptor, result = train_unsupervised(docs, fast_config())
    losses = [step["loss"] for step in result.history]
    assert sum(losses[-20:]) < 0.7 * sum(losses[:20])
    assert result.score_name == "heldout_neighbour_ndcg"
    assert result.best_score > result.evaluations[0][result.score_name]
    assert result.best_iteration > 0
    assert len(result.history) == result.iterations
    assert {"loss", "topk", "pairwise", "reconstruction"} <= result.history[0].keys()
    report = evaluate_methods(
        {"base": Truncation(D), "adaptor": adaptor},
        docs,
        doc_ids,
        queries,
        query_ids,
        qrels,
        EvaluationConfig(dims=(4, 16)),
    )
    ndcg = report.pivot()
    assert ndcg.loc["adaptor", 4] > ndcg.loc["base", 4] + 0.1


def test_supervised_stage_starts_from_stage_one_and_keeps_the_best() -> None:
    docs, doc_ids, queries, query_ids, qrels = planted()
    result = train_adaptor(docs, fast_config(), doc_ids, queries, query_ids, qrels)
    assert result.supervised is not None and result.supervised_adaptor is not None
    evaluations = [e["heldout_ndcg_at_10"] for e in result.supervised.evaluations]
    assert result.supervised.best_score == max(evaluations)
    # step 0 evaluates stage 1's weights, so stage 2 can only keep or improve on them.
    assert result.supervised.best_score >= evaluations[0]
    assert result.supervised_adaptor is not result.unsupervised_adaptor


def test_training_without_labels_skips_the_supervised_stage() -> None:
    docs, *_ = planted(n_docs=120)
    result = train_adaptor(
        docs, fast_config(), train_qrels=pd.DataFrame(columns=["query_id", "doc_id", "score"])
    )
    assert result.supervised is None and result.supervised_adaptor is None


def test_training_is_reproducible_with_a_seed() -> None:
    docs, *_ = planted(n_docs=150)
    config = fast_config(seed=7).model_copy(update={"train": fast_config(seed=7).train})
    a, _ = train_unsupervised(docs, config)
    b, _ = train_unsupervised(docs, config)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


def test_heldout_loss_stopping_keeps_the_lowest_loss() -> None:
    docs, *_ = planted(n_docs=150)
    base = fast_config()
    config = base.model_copy(
        update={"train": base.train.model_copy(update={"unsupervised_stopping": "heldout_loss"})}
    )
    _, result = train_unsupervised(docs, config)
    scores = [e["heldout_loss"] for e in result.evaluations]
    assert result.best_score == min(scores) < scores[0]


def test_early_stopping_stops_after_patience() -> None:
    docs, *_ = planted(n_docs=150)
    stage = OptimConfig(
        learning_rate=1e-9, batch_size=32, max_iterations=2000, patience=40, eval_every=20
    )
    config = fast_config().model_copy(update={"train": TrainConfig(unsupervised=stage)})
    _, result = train_unsupervised(docs, config)
    assert result.stopped_early
    assert result.iterations < 2000
    assert result.iterations - result.best_iteration >= 40


def test_nearest_neighbours_exclude_self() -> None:
    x = F.normalize(torch.randn(30, 5), dim=-1)
    neighbours = nearest_neighbours(x, 3)
    assert neighbours.shape == (30, 3)
    assert not (neighbours == torch.arange(30).unsqueeze(1)).any()
    scores = x @ x.T
    scores.fill_diagonal_(-2)
    assert torch.equal(neighbours[:, 0], scores.argmax(dim=1))


def test_bad_inputs_raise_clear_errors() -> None:
    docs, doc_ids, queries, query_ids, qrels = planted(n_docs=100)
    with pytest.raises(
        ValueError,
        match=r"prefix size\(s\) \[32\] exceed the embedding "
        r"dimension d=16",
    ):
        train_unsupervised(
            docs, fast_config().model_copy(update={"loss": LossConfig(prefix_dims=(4, 32))})
        )
    bad = docs.clone()
    bad[5, 0] = float("nan")
    with pytest.raises(ValueError, match=r"corpus: 1 row\(s\) contain NaN"):
        train_unsupervised(bad, fast_config())
    with pytest.raises(ValueError, match="corpus: empty matrix"):
        train_unsupervised(torch.zeros(0, D), fast_config())
    result = train_adaptor(docs, fast_config(), doc_ids, queries, query_ids, qrels.iloc[:0])
    assert result.supervised is None
    with pytest.raises(ValueError, match="queries: dimension mismatch: expected d=16, got d=8"):
        train_adaptor(docs, fast_config(), doc_ids, queries[:, :8], query_ids, qrels)
    unknown = pd.concat([qrels, pd.DataFrame({"query_id": ["q0"], "doc_id": ["zz"], "score": [1]})])
    with pytest.raises(ValueError, match=r"unknown corpus id\(s\), e.g. \['zz'\]"):
        train_adaptor(docs, fast_config(), doc_ids, queries, query_ids, unknown)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_matches_cpu_quality() -> None:
    docs, doc_ids, queries, query_ids, qrels = planted()
    adaptor, result = train_unsupervised(docs, fast_config(device="cuda"))
    assert result.best_score > result.evaluations[0][result.score_name]
