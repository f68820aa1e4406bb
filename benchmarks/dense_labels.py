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

import pandas as pd
import torch
from torch.nn import functional as F

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

MARKERS = ("<!-- dense-labels:start -->", "<!-- dense-labels:end -->")
DIMS = (16, 32, 64, 128, 384)


def dense_dataset(
    n_docs: int = 3600,
    n_train: int = 2600,
    n_test: int = 400,
    positives: int = 42,
    d: int = 384,
    seed: int = 0,
) -> dict[str, Any]:
    """Topics of documents; each query's 42 nearest documents of its topic are its graded
    positives (3 for the nearest 10, 2 for the next 14, 1 for the rest). The topic signal
    lives in a 48-d subspace spread over all coordinates, and the leading principal
    directions carry strong topic-independent noise, so plain truncation and PCA both
    struggle at small m."""
    g = torch.Generator().manual_seed(seed)
    n_topics = n_docs // 60
    basis = torch.linalg.qr(torch.randn(d, d, generator=g))[0]
    signal, noise_dirs = basis[:, :48], basis[:, 48:64]
    centres = torch.randn(n_topics, 48, generator=g)
    topic_of_doc = torch.arange(n_docs) % n_topics
    docs = (centres[topic_of_doc] + 0.7 * torch.randn(n_docs, 48, generator=g)) @ signal.T
    docs = docs + 2.5 * torch.randn(n_docs, 16, generator=g) @ noise_dirs.T
    docs = docs + 0.3 * torch.randn(n_docs, d, generator=g)
    n_queries = n_train + n_test
    topic_of_query = torch.randint(n_topics, (n_queries,), generator=g)
    query_signal = centres[topic_of_query] + 0.7 * torch.randn(n_queries, 48, generator=g)
    queries = query_signal @ signal.T + 2.5 * torch.randn(n_queries, 16, generator=g) @ noise_dirs.T
    queries = queries + 0.3 * torch.randn(n_queries, d, generator=g)
    docs, queries = F.normalize(docs, dim=-1), F.normalize(queries, dim=-1)
    doc_ids = [f"d{i}" for i in range(n_docs)]
    query_ids = [f"q{i}" for i in range(n_queries)]
    rows = []
    for q in range(n_queries):
        members = torch.nonzero(topic_of_doc == topic_of_query[q]).squeeze(1)
        scores = docs[members] @ queries[q]
        order = members[torch.argsort(scores, descending=True)][:positives]
        for rank, doc in enumerate(order.tolist()):
            rows.append((query_ids[q], doc_ids[doc], 3 if rank < 10 else 2 if rank < 24 else 1))
    qrels = pd.DataFrame(rows, columns=["query_id", "doc_id", "score"])
    train_ids = set(query_ids[:n_train])
    return {
        "corpus": docs,
        "corpus_ids": doc_ids,
        "queries": queries,
        "query_ids": query_ids,
        "train": qrels[qrels["query_id"].isin(train_ids)].reset_index(drop=True),
        "test": qrels[~qrels["query_id"].isin(train_ids)].reset_index(drop=True),
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
