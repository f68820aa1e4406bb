"""SciFact test nDCG@10 of every training-free baseline at every m, from cached embeddings.

No training: a quick look at :data:`components.baselines.BASELINES` on real data (the full
comparison with the adaptors is ``benchmarks/scifact_quality.py``). Reads the embeddings
``benchmarks/scifact_embeddings.py`` cached and refuses to run without them (it never
embeds, which takes minutes).

    .venv/bin/python benchmarks/scifact_baselines.py            # nDCG@10 table, markdown
    .venv/bin/python benchmarks/scifact_baselines.py --metric recall_at_100
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scifact_embeddings import DEFAULT_CACHE, _texts_digest  # noqa: E402
from components.baselines import BASELINES, fit_baselines  # noqa: E402
from components.data import load_dataset  # noqa: E402
from components.evaluation import evaluate_methods  # noqa: E402
from components.params import load_params  # noqa: E402


def cached(cache: Path, name: str, texts: list[str]) -> np.ndarray:
    """``cache/<name>.npy`` if it was computed from exactly ``texts``; exits otherwise."""
    key = cache / f"{name}.sha256"
    if not key.is_file() or key.read_text() != _texts_digest(texts):
        sys.exit(f"{cache}: no up-to-date {name} embeddings; run benchmarks/scifact_embeddings.py")
    return np.load(cache / f"{name}.npy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/scifact")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--metric", default="ndcg_at_10")
    args = parser.parse_args()
    params = load_params(args.params)
    dataset = load_dataset(args.data)
    corpus = cached(Path(args.cache), "corpus", dataset.corpus_texts())
    queries = cached(Path(args.cache), "queries", dataset.query_texts())
    start = time.perf_counter()
    report = evaluate_methods(
        fit_baselines(torch.from_numpy(corpus)),
        torch.from_numpy(corpus),
        dataset.corpus["id"].tolist(),
        torch.from_numpy(queries),
        dataset.queries["id"].tolist(),
        dataset.split(params.dataset.test_split),
        params.evaluation,
    )
    pivot = report.pivot(args.metric)
    print(f"{args.metric}, SciFact {params.dataset.test_split} split, {report.query_count} queries")
    print("| method | " + " | ".join(str(m) for m in pivot.columns) + " |")
    print("|" + "---|" * (len(pivot.columns) + 1))
    for name, row in pivot.iterrows():
        cells = " | ".join(f"{v:.4f}" for v in row.values)
        print(f"| {BASELINES[str(name)].label} (`{name}`) | {cells} |")
    print(f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
