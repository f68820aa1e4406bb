"""Benchmark (a): local provider throughput relative to a bare ``SentenceTransformer.encode``.

Same texts (SciFact abstracts), same batch size, same loaded model, in one process; runs are
interleaved in pairs (bare, ours / ours, bare, ...) so the drift of a shared CPU hits both
sides alike. Each "ours" run uses a fresh cache directory, so every text is really embedded
(plus hashing, batching, validation, normalisation and the cache writes).

    .venv/bin/python benchmarks/embedding_local_throughput.py [--n 500] [--pairs 2] \
        [--batch-size 32] [--out runs/bench/embedding_local.json]

Target: ratio (ours texts/s / bare texts/s) >= 0.95.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from components.runtime import configure_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/scifact")
    parser.add_argument("--n", type=int, default=500, help="texts per run")
    parser.add_argument("--pairs", type=int, default=2, help="interleaved (bare, ours) pairs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None, help="write results as JSON")
    args = parser.parse_args()
    configure_environment()

    from components.data import load_dataset
    from components.embedding import EmbeddingConfig, embed_texts
    from components.embedding.local import load_sentence_transformer
    from components.embedding.providers import bundled_model_path, get_provider

    texts = load_dataset(args.data).corpus_texts()[: args.n]
    base = EmbeddingConfig(batch_size=args.batch_size, progress="off")
    provider = get_provider(base)  # loads the model once; "bare" uses the same object
    model = load_sentence_transformer(
        bundled_model_path(), base.device, provider.identity.max_input_tokens
    )
    assert model is provider.model  # type: ignore[attr-defined]
    model.encode(texts[:64], batch_size=args.batch_size)  # warm-up (allocator, kernels)

    def bare() -> tuple[float, np.ndarray]:
        start = time.perf_counter()
        out = model.encode(
            texts,
            batch_size=args.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return time.perf_counter() - start, out

    def ours() -> tuple[float, np.ndarray]:
        with tempfile.TemporaryDirectory() as cache:
            config = base.model_copy(update={"cache_dir": Path(cache)})
            start = time.perf_counter()
            out = embed_texts(texts, config, kind="document")
            return time.perf_counter() - start, out

    rows = []
    for pair in range(args.pairs):
        order = (
            (("bare", bare), ("ours", ours)) if pair % 2 == 0 else (("ours", ours), ("bare", bare))
        )
        times: dict[str, float] = {}
        outputs = {}
        for name, fn in order:
            times[name], outputs[name] = fn()
        diff = float(np.abs(outputs["bare"] - outputs["ours"]).max())
        ratio = times["bare"] / times["ours"]
        rows.append(
            {
                "pair": pair,
                "bare_s": times["bare"],
                "ours_s": times["ours"],
                "bare_texts_per_s": len(texts) / times["bare"],
                "ours_texts_per_s": len(texts) / times["ours"],
                "ratio": ratio,
                "max_abs_diff": diff,
            }
        )
        print(
            f"pair {pair}: bare {times['bare']:.1f}s ({len(texts) / times['bare']:.1f}/s), "
            f"ours {times['ours']:.1f}s ({len(texts) / times['ours']:.1f}/s), "
            f"ratio {ratio:.3f}, max |diff| {diff:.1e}",
            flush=True,
        )
    total_ratio = sum(r["bare_s"] for r in rows) / sum(r["ours_s"] for r in rows)
    result = {
        "texts": len(texts),
        "batch_size": args.batch_size,
        "pairs": rows,
        "ratio_total": total_ratio,
        "ratio_median": statistics.median(r["ratio"] for r in rows),
    }
    print(
        f"ratio (total time) {total_ratio:.3f}; median per pair {result['ratio_median']:.3f}"
        f"; target >= 0.95: {'PASS' if total_ratio >= 0.95 else 'FAIL'}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
