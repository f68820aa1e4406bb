"""Local extraction backends side by side: texts/s of torch, onnx and onnx-int8, and nDCG@10
of SciFact's base embeddings from each.

Speed: the same ``--n`` SciFact abstracts through the production path (``embed_texts``:
hashing, length-sorted batches, validation, cache writes), each run into a fresh cache so
every text is really embedded; ``--rounds`` rounds, the order of the three backends rotated
each round so a shared CPU's drift hits all alike; model loading and the one-off ONNX export
happen before timing (a warm-up batch each). Quality: the whole corpus and the test queries
through each ONNX backend (kept in ``--cache``, so a re-run only re-times), against the torch
vectors of ``benchmarks/scifact_embeddings.py`` (the same model in fp32 torch), scored at
every m of the evaluation grid as the ``base`` method.

    PYTHONPATH=. .venv/bin/python benchmarks/embedding_backends.py [--n 512] [--rounds 2] \
        [--out docs/embedding_backends.json]

The issue's rule (#11): ``onnx`` becomes the default if >= 2.5x torch with nDCG@10 within
0.002 at full size; ``onnx-int8`` only if its nDCG@10 change is within 0.005.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from components.runtime import configure_environment

BACKENDS = ("torch", "onnx", "onnx-int8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/scifact")
    parser.add_argument("--n", type=int, default=512, help="texts per timed run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cache", type=Path, default=Path(".cache/benchmarks/backends"))
    parser.add_argument("--out", type=Path, default=Path("docs/embedding_backends.json"))
    parser.add_argument("--skip-speed", action="store_true", help="quality only")
    args = parser.parse_args()
    configure_environment()

    import torch

    from benchmarks.scifact_embeddings import DEFAULT_CACHE, cached_embeddings
    from components.baselines import Truncation
    from components.config import EvaluationConfig
    from components.data import load_dataset
    from components.embedding import EmbeddingConfig, embed_texts
    from components.evaluation import evaluate_methods

    dataset = load_dataset(args.data)
    configs = {
        backend: EmbeddingConfig(
            backend=backend, batch_size=args.batch_size, progress="off", cache_dir=args.cache
        )
        for backend in BACKENDS
    }

    # Quality at every m: torch from the quality benchmark's cache, ONNX through embed_texts.
    corpus_torch, queries_torch = cached_embeddings(dataset, DEFAULT_CACHE)
    vectors = {"torch": (corpus_torch, queries_torch)}
    for backend in BACKENDS[1:]:
        start = time.perf_counter()
        corpus = embed_texts(dataset.corpus_texts(), configs[backend], kind="document")
        queries = embed_texts(dataset.query_texts(), configs[backend], kind="query")
        vectors[backend] = (corpus, queries)
        print(f"{backend}: corpus and queries ready in {time.perf_counter() - start:.0f} s")
    evaluation = EvaluationConfig()
    quality: dict[str, dict[str, float]] = {}
    for backend, (corpus, queries) in vectors.items():
        report = evaluate_methods(
            {"base": Truncation(corpus.shape[1])},
            torch.from_numpy(corpus),
            dataset.corpus["id"].tolist(),
            torch.from_numpy(queries),
            dataset.queries["id"].tolist(),
            dataset.split("test"),
            evaluation,
        )
        table = report.table
        quality[backend] = {
            str(int(row["dim"])): round(float(row[report.ndcg_column]), 4)
            for _, row in table.iterrows()
        }
        cosine = float((corpus * corpus_torch).sum(axis=1).min())
        quality[backend]["min_cosine_to_torch"] = round(cosine, 4)
        print(f"{backend}: nDCG@10 {quality[backend]}")

    speed: dict[str, object] = {}
    if not args.skip_speed:
        texts = dataset.corpus_texts()[: args.n]
        for backend in BACKENDS:  # load (and export) outside the timing; models are kept
            embed_texts(texts[: args.batch_size], configs[backend])  # per process, so the
            # fresh caches below reuse them (vector caches differ, the export does not)
        seconds: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
        for round_ in range(args.rounds):
            order = BACKENDS[round_ % 3 :] + BACKENDS[: round_ % 3]
            for backend in order:
                with tempfile.TemporaryDirectory() as fresh:
                    config = configs[backend].model_copy(update={"cache_dir": Path(fresh)})
                    start = time.perf_counter()
                    embed_texts(texts, config)
                    seconds[backend].append(time.perf_counter() - start)
                print(
                    f"round {round_} {backend}: {seconds[backend][-1]:.1f} s "
                    f"({len(texts) / seconds[backend][-1]:.1f} texts/s)",
                    flush=True,
                )
        total = {backend: sum(values) for backend, values in seconds.items()}
        speed = {
            "texts": len(texts),
            "rounds": args.rounds,
            "seconds": seconds,
            "texts_per_s": {b: round(len(texts) * args.rounds / t, 2) for b, t in total.items()},
            "speedup_vs_torch": {b: round(total["torch"] / t, 3) for b, t in total.items()},
        }
        print(json.dumps(speed, indent=2))

    result = {
        "command": "PYTHONPATH=. .venv/bin/python benchmarks/embedding_backends.py "
        f"--n {args.n} --rounds {args.rounds}",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "batch_size": args.batch_size,
        "ndcg_at_10": quality,
        "speed": speed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
