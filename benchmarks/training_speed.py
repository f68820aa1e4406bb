"""Training-speed benchmark: iterations per second of both stages and full two-stage time.

Runs the default configuration from params.yaml on the cached SciFact embeddings (see
``benchmarks/scifact_embeddings.py``) ``--repeats`` times and writes the figures into the
"Training speed" block of ``docs/results.md`` and into ``docs/training_speed.json``. Run it
on a quiet machine: other processes on the same cores slow torch down a lot.

    .venv/bin/python benchmarks/training_speed.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scifact_embeddings import DEFAULT_CACHE, cached_embeddings  # noqa: E402
from components.data import load_dataset  # noqa: E402
from components.params import load_params  # noqa: E402
from components.runtime import configure_environment  # noqa: E402
from components.training import train_adaptor  # noqa: E402

BLOCK_START = "<!-- training-speed:start -->"
BLOCK_END = "<!-- training-speed:end -->"


def replace_block(path: Path, body: str, start: str = BLOCK_START, end: str = BLOCK_END) -> None:
    """Put ``body`` between the markers ``start`` / ``end`` of ``path`` (appended if
    absent); the default markers are the training-speed block's."""
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> None:
    configure_environment()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/scifact")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()
    params = load_params(args.params, {"method.train.seed": args.seed})
    dataset = load_dataset(args.data)
    corpus, queries = cached_embeddings(dataset, Path(args.cache))
    runs = []
    for repeat in range(args.repeats):
        start = time.perf_counter()
        result = train_adaptor(
            torch.from_numpy(corpus),
            params.method,
            dataset.corpus["id"].tolist(),
            torch.from_numpy(queries),
            dataset.queries["id"].tolist(),
            dataset.split("train"),
        )
        total = time.perf_counter() - start
        assert result.supervised is not None
        runs.append(
            {
                "total_seconds": total,
                "unsupervised": result.unsupervised.summary(),
                "supervised": result.supervised.summary(),
            }
        )
        print(
            f"run {repeat + 1}: two-stage {total:.1f} s; unsupervised "
            f"{result.unsupervised.iterations_per_second:.1f} it/s, supervised "
            f"{result.supervised.iterations_per_second:.1f} it/s"
        )

    def median(stage: str, key: str) -> float:
        return statistics.median(float(run[stage][key]) for run in runs)

    totals = [run["total_seconds"] for run in runs]
    command = ".venv/bin/python benchmarks/training_speed.py " + shlex.join(sys.argv[1:])
    load = os.getloadavg()[0]
    document = {
        "runs": runs,
        "median_total_seconds": statistics.median(totals),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average_1min_at_end": load,
        "command": command.strip(),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "training_speed.json").write_text(json.dumps(document, indent=2) + "\n")
    lines = [
        "## Training speed (CPU)",
        "",
        f"Command: `{command.strip()}`; {args.repeats} runs of the default configuration "
        f"(seed {args.seed}) on {os.cpu_count()} cores, {torch.get_num_threads()} torch "
        f"threads, {platform.machine()}, embeddings cached; medians.",
        "",
        "| stage | iterations | best iteration | it/s | seconds |",
        "|---|---|---|---|---|",
    ]
    for stage in ("unsupervised", "supervised"):
        lines.append(
            f"| {stage} | {median(stage, 'iterations'):.0f} | "
            f"{median(stage, 'best_iteration'):.0f} | "
            f"{median(stage, 'iterations_per_second'):.1f} | "
            f"{median(stage, 'seconds'):.1f} |"
        )
    lines += [
        "",
        f"Full two-stage training (neighbour search, both stages, held-out "
        f"evaluations): **{statistics.median(totals):.0f} s** median (min "
        f"{min(totals):.0f} s, max {max(totals):.0f} s); target: under 180 s.",
    ]
    replace_block(out / "results.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
