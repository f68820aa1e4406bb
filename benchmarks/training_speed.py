"""Training-speed benchmark: iterations per second of both stages and full two-stage time.

Runs the default configuration from params.yaml on the cached SciFact embeddings (see
``benchmarks/scifact_embeddings.py``) ``--repeats`` times and writes the figures into the
"Training speed" block of ``docs/results.md`` and into ``docs/training_speed.json``. Run it
on a quiet machine: other processes on the same cores slow torch down a lot.

    .venv/bin/python benchmarks/training_speed.py --repeats 3
    # side by side with a variant (runs interleaved in one process, both rows in the table):
    .venv/bin/python benchmarks/training_speed.py --repeats 2 \\
        --versus method.train.refit_on_all_queries=false
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
from components.params import load_params, parse_override  # noqa: E402
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
    parser.add_argument(
        "--versus",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="also time params.yaml with these dotted overrides, interleaved with the default",
    )
    args = parser.parse_args()
    configurations = {"default": load_params(args.params, {"method.train.seed": args.seed})}
    if args.versus:
        overrides = dict(parse_override(text) for text in args.versus)
        label = ", ".join(args.versus)
        configurations[label] = load_params(
            args.params, {"method.train.seed": args.seed, **overrides}
        )
    dataset = load_dataset(args.data)
    corpus, queries = cached_embeddings(dataset, Path(args.cache))
    runs: dict[str, list[dict]] = {name: [] for name in configurations}
    for repeat in range(args.repeats):
        for name, params in configurations.items():
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
            runs[name].append(
                {
                    "total_seconds": total,
                    "unsupervised": result.unsupervised.summary(),
                    "supervised": result.supervised.summary(),
                }
            )
            print(
                f"run {repeat + 1} ({name}): two-stage {total:.1f} s; unsupervised "
                f"{result.unsupervised.iterations_per_second:.1f} it/s, supervised "
                f"{result.supervised.iterations_per_second:.1f} it/s"
            )

    def median(name: str, stage: str, key: str) -> float:
        return statistics.median(float(run[stage][key]) for run in runs[name])

    totals = {name: [run["total_seconds"] for run in done] for name, done in runs.items()}
    command = ".venv/bin/python benchmarks/training_speed.py " + shlex.join(sys.argv[1:])
    load = os.getloadavg()[0]
    document = {
        "runs": runs["default"],
        "median_total_seconds": statistics.median(totals["default"]),
        "versus": {
            name: {"runs": done, "median_total_seconds": statistics.median(totals[name])}
            for name, done in runs.items()
            if name != "default"
        },
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
        f"Command: `{command.strip()}`; {args.repeats} runs of each configuration "
        f"(seed {args.seed}, interleaved) on {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, {platform.machine()}, embeddings cached; "
        "medians.",
        "",
        "| configuration | stage | iterations | best iteration | refit steps | it/s | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in runs:
        for stage in ("unsupervised", "supervised"):
            lines.append(
                f"| {name} | {stage} | {median(name, stage, 'iterations'):.0f} | "
                f"{median(name, stage, 'best_iteration'):.0f} | "
                f"{median(name, stage, 'refit_iterations'):.0f} | "
                f"{median(name, stage, 'iterations_per_second'):.1f} | "
                f"{median(name, stage, 'seconds'):.1f} |"
            )
    lines.append("")
    for name, values in totals.items():
        lines.append(
            f"Full two-stage training, {name} (neighbour search, both stages, held-out "
            f"evaluations): **{statistics.median(values):.0f} s** median (min "
            f"{min(values):.0f} s, max {max(values):.0f} s); target: under 180 s."
        )
        lines.append("")
    replace_block(out / "results.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
