"""Supervised-stage variants on SciFact: test nDCG@10 per m, from a fixed stage-1 adaptor.

Each variant overrides ``method.loss``, ``method.train.supervised`` and ``method.train``
settings of params.yaml (a JSON object); stage 1 is trained once per seed and cached, so a
variant costs one supervised stage per seed. The rows of docs/engine.md "Listwise
contrastive term" come from this script.

    PYTHONPATH=. .venv/bin/python benchmarks/supervised_variants.py \\
        '{"loss": {"delta": 1.0, "gamma": 0.0}}' --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scifact_embeddings import DEFAULT_CACHE, cached_embeddings  # noqa: E402
from components.adaptor import load_adaptor, save_adaptor  # noqa: E402
from components.data import load_dataset  # noqa: E402
from components.evaluation import evaluate_methods  # noqa: E402
from components.params import load_params  # noqa: E402
from components.runtime import configure_environment  # noqa: E402
from components.training import train_supervised, train_unsupervised  # noqa: E402


def main() -> None:
    configure_environment()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "overrides", help='JSON: {"loss": {...}, "supervised": {...}, "train": {...}}'
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stage1-cache", default=".cache/benchmarks/stage1")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = json.loads(args.overrides)
    params = load_params("params.yaml")
    dataset = load_dataset("data/scifact")
    corpus_np, queries_np = cached_embeddings(dataset, DEFAULT_CACHE)
    corpus, queries = torch.from_numpy(corpus_np), torch.from_numpy(queries_np)
    corpus_ids, query_ids = dataset.corpus["id"].tolist(), dataset.queries["id"].tolist()
    method = params.method
    loss = method.loss.model_copy(update=overrides.get("loss", {}))
    supervised = method.train.supervised.model_copy(update=overrides.get("supervised", {}))
    dims = params.evaluation.dims
    rows = []
    for seed in args.seeds:
        train = method.train.model_copy(
            update={"seed": seed, "supervised": supervised, **overrides.get("train", {})}
        )
        stage1_dir = Path(args.stage1_cache) / f"seed{seed}"
        if (stage1_dir / "adaptor.json").is_file():
            start, _ = load_adaptor(stage1_dir)
        else:
            start, _ = train_unsupervised(corpus, method.model_copy(update={"train": train}))
            save_adaptor(start, stage1_dir, {"seed": seed})
        config = method.model_copy(update={"loss": loss, "train": train})
        began = time.perf_counter()
        adaptor, result = train_supervised(
            corpus,
            corpus_ids,
            queries,
            query_ids,
            dataset.split("train"),
            config,
            copy.deepcopy(start),
        )
        seconds = time.perf_counter() - began
        report = evaluate_methods(
            {"supervised": adaptor},
            corpus,
            corpus_ids,
            queries,
            query_ids,
            dataset.split("test"),
            params.evaluation,
        )
        values = [round(float(report.pivot().loc["supervised", m]), 4) for m in dims]
        rows.append(values)
        print(
            f"seed {seed}: {values} ({seconds:.1f} s, {result.iterations} steps, best at "
            f"{result.best_iteration}, held-out {result.best_score:.4f}, refit "
            f"{result.refit_iterations} steps)",
            flush=True,
        )
    mean = np.mean(rows, axis=0).round(4).tolist()
    spread = (np.max(rows, axis=0) - np.min(rows, axis=0)).round(3).tolist()
    print(f"mean over seeds at m={list(dims)}: {mean}; spread {spread}")


if __name__ == "__main__":
    main()
