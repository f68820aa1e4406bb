"""Stage 1 with ``start_patience`` against patience alone on SciFact: same weights, time.

For seeds 0, 1, 2 trains stage 1 (the pretrain stage) from the params.yaml defaults twice:
with ``method.train.unsupervised.start_patience: 3`` (the default) and with it off (only
``patience``, the previous behaviour), and reports whether the two adaptors are bit-identical,
the steps each ran, why each stopped and its wall time (neighbour search included). Uses the
cached SciFact embeddings of ``benchmarks/scifact_embeddings.py``.

    PYTHONPATH=. .venv/bin/python benchmarks/stage1_start_patience.py [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scifact_embeddings import cached_embeddings  # noqa: E402
from components.data import load_dataset  # noqa: E402
from components.params import load_params  # noqa: E402
from components.runtime import configure_environment  # noqa: E402
from components.training import train_unsupervised  # noqa: E402


def main() -> None:
    configure_environment()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    corpus, _ = cached_embeddings(load_dataset("data/scifact"))
    out: dict[int, dict] = {}
    for seed in (0, 1, 2):
        runs = {}
        for label, start_patience in (("start_patience_3", 3), ("patience_only", None)):
            params = load_params(
                "params.yaml",
                {
                    "method.train.seed": seed,
                    "method.train.unsupervised.start_patience": start_patience,
                },
            )
            began = time.perf_counter()
            adaptor, result = train_unsupervised(corpus, params.method)
            runs[label] = (adaptor, result, time.perf_counter() - began)
        new, old = runs["start_patience_3"], runs["patience_only"]
        weights = old[0].state_dict()
        out[seed] = {
            "identical_weights": all(
                torch.equal(new[0].state_dict()[k], weights[k]) for k in weights
            ),
            **{
                name: {
                    "iterations": run[1].iterations,
                    "stop": run[1].stop_reason,
                    "best": run[1].best_iteration,
                    "seconds": round(run[2], 1),
                }
                for name, run in (("new", new), ("old", old))
            },
        }
        print(seed, out[seed], flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
