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
from components.synthetic import planted_retrieval
from components.training import (
    WeightAverage,
    build_adaptor,
    mine_hard_negatives,
    nearest_neighbours,
    sample_hard_negatives,
    sample_pairs,
    train_adaptor,
    train_unsupervised,
)

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


def test_sample_pairs_keeps_the_budget_and_every_query() -> None:
    g = torch.Generator().manual_seed(0)
    labels = [[(q * 100 + j, 1 + j % 3) for j in range(40)] for q in range(8)]
    assert sample_pairs(labels, None, g) is labels and sample_pairs(labels, 320, g) is labels
    kept = sample_pairs(labels, 50, g)
    assert sum(map(len, kept)) == 50
    assert all(6 <= len(k) <= 7 for k in kept)  # round-robin: spread evenly
    for k, full in zip(kept, labels, strict=True):
        assert set(k) <= set(full) and len(set(k)) == len(k)
    few = sample_pairs(labels, 5, g)
    assert [len(k) for k in few] == [1, 1, 1, 1, 1, 0, 0, 0]


def test_pair_budget_above_the_batch_leaves_training_unchanged() -> None:
    docs, doc_ids, queries, query_ids, qrels = planted()
    qrels = pd.concat([qrels, qrels.assign(doc_id=qrels["doc_id"].shift(1).fillna("d299"))])
    runs = []
    for budget in (None, 10_000, 40):
        config = fast_config().model_copy(deep=True)
        config = config.model_copy(
            update={"loss": config.loss.model_copy(update={"ranking_pairs_per_step": budget})}
        )
        result = train_adaptor(docs, config, doc_ids, queries, query_ids, qrels)
        runs.append([step["ranking"] for step in result.supervised.history])
    assert runs[0] == runs[1]  # a budget the batch fits in draws nothing and changes nothing
    assert runs[2] != runs[0]  # 2 labels x 51 queries > 40: sampled


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
        learning_rate=1e-9, batch_size=32, max_iterations=2000, patience=2, eval_every=20
    )
    config = fast_config().model_copy(update={"train": TrainConfig(unsupervised=stage)})
    _, result = train_unsupervised(docs, config)
    assert result.stopped_early and result.stop_reason == "patience"
    assert result.iterations - result.best_iteration == 2 * 20  # patience counts evaluations


def test_stage_one_stops_within_start_patience_when_the_start_is_best(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Documents of rank 4 in 16-d: after the SVD rotation the first 4 coordinates hold all
    # of each vector, so every prefix (4, 8, 16) already retrieves the exact neighbours
    # (held-out neighbour nDCG 1.0) and no step can beat the start.
    g = torch.Generator().manual_seed(3)
    docs = F.normalize(torch.randn(200, 4, generator=g) @ torch.randn(4, D, generator=g), dim=-1)
    stage = OptimConfig(
        learning_rate=3e-3, max_iterations=5000, patience=50, start_patience=3, eval_every=20
    )
    config = fast_config(use_rotation=True).model_copy(
        update={"train": TrainConfig(unsupervised=stage)}
    )
    start = build_adaptor(docs, config)
    with caplog.at_level("INFO", logger="components.training"):
        adaptor, result = train_unsupervised(docs, config)
    assert result.evaluations[0]["heldout_neighbour_ndcg"] == pytest.approx(1.0)
    assert result.stop_reason == "start_is_best" and result.best_iteration == 0
    assert result.iterations == 3 * 20 and len(result.evaluations) == 1 + 3
    for name, value in start.state_dict().items():  # kept exactly the starting adaptor
        torch.testing.assert_close(adaptor.state_dict()[name], value, rtol=0, atol=0)
    assert "no held-out evaluation in 3 (60 steps) beat the starting point" in caplog.text


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


def test_training_reports_step_loss_heldout_best_and_eta(caplog: pytest.LogCaptureFixture) -> None:
    docs, doc_ids, queries, query_ids, qrels = planted()
    config = fast_config()
    with caplog.at_level("INFO", logger="components.progress"):
        _, result = train_unsupervised(docs, config, progress_interval_s=0.0)
    lines = [r.getMessage() for r in caplog.records if r.name == "components.progress"]
    assert lines[0].startswith("unsupervised: step 0/300, heldout_neighbour_ndcg ")
    running = [line for line in lines[1:-1] if "ETA" in line]
    assert len(running) >= result.iterations - 1  # a line per step at interval 0
    last_running = running[-1]
    for field in ("loss ", "heldout_neighbour_ndcg ", "best ", "steps/s", "ETA "):
        assert field in last_running
    best = f"best {result.best_score:.4f} at step {result.best_iteration}"
    assert best in lines[-1] and "done in" in lines[-1]
    assert lines[-1].startswith(f"unsupervised: step {result.iterations}/300")


def test_progress_eta_runs_to_the_early_stopping_step() -> None:
    from components.progress import StepProgress

    progress = StepProgress("supervised", total=1000, patience=200, mode="off")
    progress.evaluated(0, 0.5)
    progress.step(100, 1.0)
    progress.evaluated(100, 0.4)  # worse: still stops at 0 + patience
    assert progress.stop_step == 200 and "stops at step 200" in progress.line()
    progress.evaluated(150, 0.7)
    assert progress.stop_step == 350 and progress.best_step == 150
    lower = StepProgress("x", total=300, patience=500, higher_is_better=False, mode="off")
    lower.evaluated(0, 2.0)
    lower.evaluated(50, 1.0)
    assert lower.best == 1.0 and lower.stop_step == 300  # capped by max_iterations


def test_hard_negative_mining_never_returns_a_labelled_positive() -> None:
    g = torch.Generator().manual_seed(0)
    corpus = F.normalize(torch.randn(120, 8, generator=g), dim=-1)
    # Each query sits on its positives, so they fill the top of its base ranking.
    labels = [[(doc, 1 + doc % 3) for doc in range(10 * i, 10 * i + 2 + 4 * i)] for i in range(5)]
    queries = F.normalize(
        torch.stack([corpus[[doc for doc, _ in query]].mean(0) for query in labels]), dim=-1
    )
    mined = mine_hard_negatives(queries, labels, corpus, depth=15)
    assert mined.shape == (5, 15)
    scores = queries @ corpus.T
    for row, query in enumerate(labels):
        positives = {doc for doc, _ in query}
        kept = mined[row].tolist()
        assert not positives & set(kept) and len(set(kept)) == 15
        unlabelled = [
            d for d in scores[row].argsort(descending=True).tolist() if d not in positives
        ]
        assert kept == unlabelled[:15]  # the base model's best-ranked unlabelled documents
    tiny = mine_hard_negatives(queries[:1], labels[:1], corpus[:5], depth=15)
    assert (tiny[0, 3:] == -1).all() and set(tiny[0, :3].tolist()) == {2, 3, 4}
    drawn = sample_hard_negatives(tiny, torch.tensor([0, 0]), 2, torch.Generator())
    assert len(drawn) <= 4 and set(drawn) <= {2, 3, 4}


def test_contrastive_term_and_hard_negatives_train_and_are_logged() -> None:
    docs, doc_ids, queries, query_ids, qrels = planted()
    config = fast_config()
    config = config.model_copy(
        update={
            "loss": config.loss.model_copy(
                update={"delta": 1.0, "hard_negatives": 3, "hard_negative_depth": 10}
            )
        }
    )
    result = train_adaptor(docs, config, doc_ids, queries, query_ids, qrels)
    history = result.supervised.history
    assert all("contrastive" in step for step in history)
    first, last = history[0]["contrastive"], min(step["contrastive"] for step in history[-50:])
    assert last < first
    report = evaluate_methods(
        {"base": Truncation(D), "adaptor": result.supervised_adaptor},
        docs,
        doc_ids,
        queries,
        query_ids,
        qrels,
        EvaluationConfig(dims=(4,)),
    )
    assert report.pivot().loc["adaptor", 4] > report.pivot().loc["base", 4] + 0.2


def test_weight_average_is_the_hand_computed_ema_and_skips_integer_buffers() -> None:
    net = torch.nn.Linear(1, 1, bias=False)
    net.register_buffer("count", torch.tensor(7))  # not averaged: not floating point
    with torch.no_grad():
        net.weight.fill_(1.0)
    average = WeightAverage(net, decay=0.5)
    for value in (3.0, 5.0):
        with torch.no_grad():
            net.weight.fill_(value)
        average.update(net)
    target = torch.nn.Linear(1, 1, bias=False)
    target.register_buffer("count", torch.tensor(1))
    average.load_into(target)
    # 1 -> 0.5*1 + 0.5*3 = 2 -> 0.5*2 + 0.5*5 = 3.5
    assert target.weight.item() == pytest.approx(3.5)
    assert int(target.count) == 1
    with pytest.raises(ValueError, match=r"ema decay must be in \(0, 1\), got 1.0"):
        WeightAverage(net, decay=1.0)


def test_ema_and_refit_on_all_queries_train_and_are_reported() -> None:
    data = planted_retrieval(
        n_docs=300,
        n_train=60,
        n_test=40,
        positives=4,
        d=D,
        signal_dim=4,
        noise_dim=4,
        docs_per_topic=20,
        seed=0,
    )
    args = (data.corpus_ids, data.queries, data.query_ids, data.train)
    config = fast_config()
    # batch 16 of 51 fitting queries: a step sees a share of them, so the refit's steps scale
    supervised = config.train.supervised.model_copy(update={"ema_decay": 0.9, "batch_size": 16})
    train = config.train.model_copy(update={"supervised": supervised})
    plain = train_adaptor(data.corpus, config.model_copy(update={"train": train}), *args)
    refit_train = train.model_copy(update={"refit_on_all_queries": True})
    refit = train_adaptor(data.corpus, config.model_copy(update={"train": refit_train}), *args)
    # the same selection pass (same seed), then a refit from the same start on all 60
    # queries, for as many passes over the queries as the chosen step saw
    best = plain.supervised.best_iteration
    assert refit.supervised.best_iteration == best > 0
    n_fit = 60 - round(60 * train.query_holdout_fraction)
    assert n_fit == 51
    assert refit.supervised.refit_iterations == round(best * 60 / n_fit)
    assert refit.supervised.summary()["refit_iterations"] == refit.supervised.refit_iterations
    assert plain.supervised.refit_iterations == 0
    changed = [
        not torch.equal(a, b)
        for a, b in zip(
            refit.supervised_adaptor.state_dict().values(),
            plain.supervised_adaptor.state_dict().values(),
            strict=True,
        )
    ]
    assert any(changed)
    report = evaluate_methods(
        {
            "base": Truncation(D),
            "plain": plain.supervised_adaptor,
            "refit": refit.supervised_adaptor,
        },
        data.corpus,
        data.corpus_ids,
        data.queries,
        data.query_ids,
        data.test,
        EvaluationConfig(dims=(4,)),
    )
    assert report.pivot().loc["refit", 4] > 2 * report.pivot().loc["base", 4]
