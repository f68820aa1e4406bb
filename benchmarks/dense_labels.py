"""Dense-label benchmark: the supervised stage's cost per step and its quality when every
query has tens of graded positives (issue: Eq. 5 over [labelled pairs x candidates]).

Builds a synthetic dataset of the shape users reported (3,600 documents, 2,600 training and
400 test queries, 42 graded positives per query: about 110k training pairs) with planted
topic structure, and measures side by side in one process:

* seconds per supervised step on SciFact (the cached embeddings of
  ``benchmarks/scifact_embeddings.py``), on the dense set with the default pair budget
  (``method.loss.ranking_pairs_per_step``) and on the dense set with every pair scored;
* test nDCG@10 per m on the dense set after the same number of steps with and without the
  budget, next to truncation and PCA.

    .venv/bin/python benchmarks/dense_labels.py --out docs/dense_labels.json  # ~15 min

Writes the figures between the dense-labels markers of ``docs/results.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scifact_embeddings import cached_embeddings  # noqa: E402
from benchmarks.training_speed import replace_block  # noqa: E402
from components import training  # noqa: E402
from components.baselines import fit_baselines  # noqa: E402
from components.config import EvaluationConfig, MethodConfig  # noqa: E402
from components.data import load_dataset  # noqa: E402
from components.evaluation import evaluate_methods  # noqa: E402
from components.params import load_params  # noqa: E402
from components.runtime import configure_environment  # noqa: E402
from components.synthetic import planted_retrieval  # noqa: E402

MARKERS = ("<!-- dense-labels:start -->", "<!-- dense-labels:end -->")
DIMS = (16, 32, 64, 128, 384)


def dense_dataset(seed: int = 0) -> dict[str, Any]:
    """3,600 documents in 60-document topics, 2,600 training and 400 test queries, each
    with its topic's 42 nearest documents (by embedding cosine) as graded positives (3 for
    the nearest 10, 2 for the next 14, 1 for the rest). The topic signal lives in a 48-d
    subspace spread over all coordinates and the leading principal directions carry strong
    topic-independent variation (:func:`components.synthetic.planted_retrieval`), so plain
    truncation and PCA both struggle at small m."""
    data = planted_retrieval(grade_by="embedding", seed=seed)
    return {
        "corpus": data.corpus,
        "corpus_ids": data.corpus_ids,
        "queries": data.queries,
        "query_ids": data.query_ids,
        "train": data.train,
        "test": data.test,
    }


def with_budget(
    config: MethodConfig, budget: int | None, steps: int | None, eval_every: int = 50
) -> Any:
    """``config`` with the pair budget, and ``steps`` steps exactly (``None``: the
    configured ``max_iterations`` and early stopping)."""
    loss = config.loss.model_copy(update={"ranking_pairs_per_step": budget})
    fixed = {} if steps is None else {"max_iterations": steps, "patience": 10**6}
    supervised = config.train.supervised.model_copy(update={"eval_every": eval_every, **fixed})
    train = config.train.model_copy(update={"supervised": supervised})
    return config.model_copy(update={"loss": loss, "train": train})


def seconds_per_step(run: Callable[[], object]) -> tuple[float, int]:
    """Median wall time of one optimiser step (loss, backward, update) over a run."""
    durations: list[float] = []
    original = training.train_step

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            durations.append(time.perf_counter() - start)

    training.train_step = timed
    try:
        run()
    finally:
        training.train_step = original
    return statistics.median(durations), len(durations)


def supervised(data: dict[str, Any], config: MethodConfig) -> Any:
    start = training.build_adaptor(torch.as_tensor(data["corpus"]), config)
    return training.train_supervised(
        data["corpus"],
        data["corpus_ids"],
        data["queries"],
        data["query_ids"],
        data["train"],
        config,
        start,
    )


def main() -> None:
    configure_environment()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timing-steps", type=int, default=30)
    parser.add_argument("--quality-steps", type=int, default=100)
    parser.add_argument("--results", default="docs/results.md")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    params = load_params("params.yaml")
    config = params.method
    budget = config.loss.ranking_pairs_per_step
    dense = dense_dataset()
    scifact_set = load_dataset("data/scifact")
    corpus, queries = cached_embeddings(scifact_set)
    scifact = {
        "corpus": torch.as_tensor(corpus),
        "corpus_ids": scifact_set.corpus["id"].tolist(),
        "queries": torch.as_tensor(queries),
        "query_ids": scifact_set.queries["id"].tolist(),
        "train": scifact_set.qrels["train"],
    }
    steps = args.timing_steps
    timing = {}
    for name, data, chosen in (
        ("scifact", scifact, budget),
        ("dense_budget", dense, budget),
        ("dense_all_pairs", dense, None),
    ):
        cfg = with_budget(config, chosen, steps, eval_every=steps)
        per_step, count = seconds_per_step(lambda d=data, c=cfg: supervised(d, c))
        timing[name] = {"seconds_per_step": round(per_step, 4), "steps": count}
        print(f"{name}: {per_step:.3f} s per step ({count} steps)", flush=True)

    quality: dict[str, dict[int, float]] = {}
    trained = {}
    for name, chosen, fixed_steps in (
        ("budget", budget, args.quality_steps),
        ("all_pairs", None, args.quality_steps),
        ("budget_early_stopped", budget, None),
    ):
        cfg = with_budget(config, chosen, fixed_steps)
        began = time.perf_counter()
        adaptor, result = supervised(dense, cfg)
        trained[name] = {
            "seconds": round(time.perf_counter() - began, 1),
            "best_iteration": result.best_iteration,
            "best_heldout": round(result.best_score, 4),
            "iterations": result.iterations,
        }
        quality[f"adaptor_{name}"] = adaptor
        print(f"trained {name}: {trained[name]}", flush=True)
    methods = {
        **fit_baselines(dense["corpus"]),
        **{name: adaptor for name, adaptor in quality.items()},
    }
    report = evaluate_methods(
        methods,
        dense["corpus"],
        dense["corpus_ids"],
        dense["queries"],
        dense["query_ids"],
        dense["test"],
        EvaluationConfig(dims=DIMS),
    )
    ndcg = report.pivot()
    table = {m: {int(k): round(float(v), 4) for k, v in ndcg.loc[m].items()} for m in ndcg.index}
    ratio = timing["dense_budget"]["seconds_per_step"] / timing["scifact"]["seconds_per_step"]
    result = {
        "command": "python " + shlex.join(sys.argv),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "dense_shape": {
            "documents": len(dense["corpus_ids"]),
            "train_queries": int(dense["train"]["query_id"].nunique()),
            "train_pairs": len(dense["train"]),
            "positives_per_query": round(
                len(dense["train"]) / dense["train"]["query_id"].nunique(), 1
            ),
        },
        "ranking_pairs_per_step": budget,
        "timing": timing,
        "dense_over_scifact_per_step": round(ratio, 2),
        "training": trained,
        "ndcg_at_10": table,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result, indent=2))
    header = "| method | " + " | ".join(f"m={m}" for m in DIMS) + " |"
    lines = [
        "### Dense labels: cost per step and quality",
        "",
        f"Command: `{result['command']}` ({result['machine']}; "
        "the three timings side by side in one process).",
        f"Synthetic set: {result['dense_shape']}.",
        "",
        "| set | pairs scored per step | seconds per step |",
        "|---|---|---|",
        f"| SciFact | all (~145) | {timing['scifact']['seconds_per_step']:.3f} |",
        f"| dense | at most {budget} | {timing['dense_budget']['seconds_per_step']:.3f} |",
        f"| dense | all (~5,400) | {timing['dense_all_pairs']['seconds_per_step']:.3f} |",
        "",
        f"Dense with the budget costs {ratio:.2f}x SciFact per step. Test nDCG@10 of "
        f"the dense set (same seed; adaptors after {args.quality_steps} steps with and "
        "without the budget, and with the budget until early stopping):",
        "",
        header,
        "|---" * (len(DIMS) + 1) + "|",
    ]
    for method, values in table.items():
        lines.append(f"| {method} | " + " | ".join(f"{values[m]:.4f}" for m in DIMS) + " |")
    lines += ["", "| training | steps | seconds |", "|---|---|---|"]
    lines += [f"| {name} | {t['iterations']} | {t['seconds']} |" for name, t in trained.items()]
    body = "\n".join(lines)
    replace_block(Path(args.results), body, *MARKERS)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
