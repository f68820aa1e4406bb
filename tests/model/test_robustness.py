"""Issue #14 item 4: on planted hard cases the supervised adaptor never ends below the best
training-free baseline at any m on the test split, or the gate refuses it.

The cases are shaped like real hard ones (components/synthetic.py): tens of graded positives
per query, a couple of dozen training queries, a corpus whose top principal directions are
topic-independent noise, and one where the baselines are already near the best a linear map
can do (the signal leads the principal directions), so that training has little to add and
much to lose. Training uses params.yaml's method settings (the defaults users get), with
the prefix sizes of the small d and a cap on steps.
"""

from __future__ import annotations

from typing import Any

import pytest

from components.baselines import fit_baselines
from components.config import EvaluationConfig, MethodConfig
from components.evaluation import evaluate_methods
from components.params import load_params
from components.registry.gate import decide
from components.synthetic import planted_retrieval
from components.training import train_adaptor

DIMS = (4, 8, 16, 32)
SHAPE = {"n_docs": 480, "n_test": 100, "d": 32, "signal_dim": 8, "noise_dim": 4}
CASES: dict[str, dict[str, Any]] = {
    "dense_graded_labels": {"n_train": 60, "positives": 16, "docs_per_topic": 24},
    "few_training_queries": {"n_train": 20, "positives": 8, "docs_per_topic": 30},
    "noise_leads_the_principal_directions": {
        "n_train": 60,
        "positives": 4,
        "noise_dim": 8,
        "noise_scale": 4.0,
        "docs_per_topic": 30,
    },
    "signal_leads_the_principal_directions": {
        "n_train": 40,
        "positives": 8,
        "noise_scale": 0.5,
        "docs_per_topic": 30,
    },
}


def default_method(seed: int) -> MethodConfig:
    method = load_params("params.yaml").method
    capped = {"max_iterations": 300}  # test time: margins at this cap were measured >= 0.05
    return method.model_copy(
        update={
            "loss": method.loss.model_copy(update={"prefix_dims": DIMS}),
            "train": method.train.model_copy(
                update={
                    "seed": seed,
                    "unsupervised": method.train.unsupervised.model_copy(update=capped),
                    "supervised": method.train.supervised.model_copy(update=capped),
                }
            ),
        }
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_supervised_adaptor_never_ships_below_the_best_baseline(case: str) -> None:
    data = planted_retrieval(seed=1, **{**SHAPE, **CASES[case]})
    trained = train_adaptor(
        data.corpus,
        default_method(seed=1),
        data.corpus_ids,
        data.queries,
        data.query_ids,
        data.train,
    )
    baselines = fit_baselines(data.corpus)
    report = evaluate_methods(
        {**baselines, "adaptor_supervised": trained.supervised_adaptor},
        data.corpus,
        data.corpus_ids,
        data.queries,
        data.query_ids,
        data.test,
        EvaluationConfig(dims=DIMS),
    )
    table = report.pivot()
    supervised = {m: float(table.loc["adaptor_supervised", m]) for m in DIMS}
    baseline_values = {b: {m: float(table.loc[b, m]) for m in DIMS} for b in baselines}
    best = {m: max(values[m] for values in baseline_values.values()) for m in DIMS}
    registry = load_params("params.yaml").registry
    margin = registry.min_delta_vs_baselines
    below = {
        m: round(best[m] - supervised[m], 4)
        for m in DIMS
        if supervised[m] - best[m] < margin - 1e-9
    }
    decision = decide(supervised, baseline_values, registry)
    # The gate (params.yaml's thresholds) refuses exactly the adaptors below the best
    # baseline (by its margin) at some m, and says where.
    assert decision.passed == (not below), (case, below, decision.summary())
    for m in below:
        assert any(
            f"m={m}:" in failure and "best baseline" in failure for failure in decision.failures
        )
    if case != "signal_leads_the_principal_directions":
        # Where labels carry what the principal directions miss, training must beat them all.
        assert not below, f"{case}: below the best baseline by {below}"
