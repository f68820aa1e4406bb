"""Quality benchmark: SciFact test nDCG@10 / Recall@100 / MRR@10 per dimension, every method.

Embeds SciFact once with the bundled all-MiniLM-L6-v2 (cached on disk), trains both stages on
the train split for each seed (the default configuration from params.yaml, and the
paper-faithful configuration: identity start, no rotation), evaluates on the test split and
writes ``docs/results.md`` (table, seeds, wall time, command) and ``docs/results.json``
(method → m → metric → value, means over seeds).

    make bench-quality                     # = .venv/bin/python benchmarks/scifact_quality.py
    .venv/bin/python benchmarks/scifact_quality.py --seeds 0 1 2 --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scifact_embeddings import DEFAULT_CACHE, cached_embeddings  # noqa: E402
from components.baselines import BASELINE_NAMES, BASELINES, fit_baselines  # noqa: E402
from components.config import MethodConfig  # noqa: E402
from components.data import load_dataset  # noqa: E402
from components.evaluation import EvaluationReport, evaluate_methods  # noqa: E402
from components.params import load_params  # noqa: E402
from components.runtime import configure_environment  # noqa: E402
from components.training import TrainingResult, train_adaptor  # noqa: E402

METHOD_ORDER = [
    *BASELINE_NAMES,
    "adaptor_unsupervised",
    "adaptor_supervised",
    "paper_unsupervised",
    "paper_supervised",
]
METHOD_LABELS = {
    **{name: baseline.label for name, baseline in BASELINES.items()},
    "adaptor_unsupervised": "adaptor, unsupervised (default: rotation start)",
    "adaptor_supervised": "adaptor, supervised (default: rotation start)",
    "paper_unsupervised": "adaptor, unsupervised (paper: identity start, Eq. 5 scale 1)",
    "paper_supervised": "adaptor, supervised (paper: identity start, Eq. 5 scale 1)",
}


def paper_config(config: MethodConfig) -> MethodConfig:
    """The paper's set-up: identity start (no rotation) and Eq. 5 unscaled (scale 1)."""
    adaptor = config.adaptor.model_copy(update={"use_rotation": False})
    loss = config.loss.model_copy(update={"ranking_scale": 1.0})
    return config.model_copy(update={"adaptor": adaptor, "loss": loss})


def with_seed(config: MethodConfig, seed: int) -> MethodConfig:
    return config.model_copy(update={"train": config.train.model_copy(update={"seed": seed})})


def stage_figures(prefix: str, result: TrainingResult) -> dict[str, float]:
    out: dict[str, float] = {}
    for stage in (result.unsupervised, result.supervised):
        if stage is not None:
            out[f"{prefix}_{stage.phase}_seconds"] = stage.seconds
            out[f"{prefix}_{stage.phase}_iterations"] = stage.iterations
            out[f"{prefix}_{stage.phase}_best_iteration"] = stage.best_iteration
            out[f"{prefix}_{stage.phase}_it_per_s"] = stage.iterations_per_second
            out[f"{prefix}_{stage.phase}_refit_iterations"] = stage.refit_iterations
    return out


def run_seed(seed: int, config: MethodConfig, data: dict) -> tuple[EvaluationReport, dict]:
    methods = dict(fit_baselines(data["corpus"]))
    timings: dict[str, float] = {}
    for prefix, method_config in (("adaptor", config), ("paper", paper_config(config))):
        start = time.perf_counter()
        result = train_adaptor(
            data["corpus"],
            with_seed(method_config, seed),
            data["corpus_ids"],
            data["queries"],
            data["query_ids"],
            data["train_qrels"],
        )
        timings[f"{prefix}_train_seconds"] = time.perf_counter() - start
        timings.update(stage_figures(prefix, result))
        # A stage 1 that kept its start is that baseline, not a trained adaptor: no row.
        timings[f"{prefix}_stage1_kept_start"] = float(result.unsupervised.best_iteration == 0)
        if not timings[f"{prefix}_stage1_kept_start"]:
            methods[f"{prefix}_unsupervised"] = result.unsupervised_adaptor
        methods[f"{prefix}_supervised"] = result.supervised_adaptor
    report = evaluate_methods(
        methods,
        data["corpus"],
        data["corpus_ids"],
        data["queries"],
        data["query_ids"],
        data["test_qrels"],
        data["evaluation"],
    )
    return report, timings


def aggregate(tables: list[pd.DataFrame]) -> pd.DataFrame:
    stacked = pd.concat(tables)
    metrics = [c for c in stacked.columns if c not in ("method", "dim")]
    grouped = stacked.groupby(["method", "dim"], sort=False)[metrics]
    mean = grouped.mean().add_suffix("_mean")
    std = grouped.std(ddof=0).add_suffix("_std")
    return pd.concat([mean, std], axis=1).reset_index()


def markdown_table(summary: pd.DataFrame, metric: str, dims: list[int], seeds: int) -> str:
    header = "| method | " + " | ".join(str(m) for m in dims) + " |"
    lines = [header, "|" + "---|" * (len(dims) + 1)]
    for method in METHOD_ORDER:
        rows = summary[summary["method"] == method].set_index("dim")
        if rows.empty:
            continue
        cells = []
        for m in dims:
            mean = rows.loc[m, f"{metric}_mean"]
            std = rows.loc[m, f"{metric}_std"]
            cells.append(f"{mean:.3f} ± {std:.3f}" if seeds > 1 else f"{mean:.3f}")
        lines.append(f"| {METHOD_LABELS[method]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    configure_environment()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/scifact")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(args.params)
    dataset = load_dataset(args.data)
    corpus, queries = cached_embeddings(dataset, Path(args.cache))
    data = {
        "corpus": torch.from_numpy(corpus),
        "queries": torch.from_numpy(queries),
        "corpus_ids": dataset.corpus["id"].tolist(),
        "query_ids": dataset.queries["id"].tolist(),
        "train_qrels": dataset.split("train"),
        "test_qrels": dataset.split("test"),
        "evaluation": params.evaluation,
    }
    wall_start = time.perf_counter()
    tables, timings, reports = [], [], []
    for seed in args.seeds:
        report, seed_timings = run_seed(seed, params.method, data)
        tables.append(report.table)
        timings.append({"seed": seed, **seed_timings})
        reports.append(report)
        print(
            f"seed {seed}: default two-stage training {seed_timings['adaptor_train_seconds']:.1f} s"
        )
        print(report.pivot().round(4).to_string())
    wall = time.perf_counter() - wall_start
    summary = aggregate(tables)
    write_outputs(
        Path(args.out),
        summary,
        pd.DataFrame(timings),
        reports,
        args,
        wall,
        params.evaluation.dims or sorted(summary["dim"].unique()),
    )


def write_outputs(
    out: Path,
    summary: pd.DataFrame,
    timings: pd.DataFrame,
    reports: list[EvaluationReport],
    args: argparse.Namespace,
    wall: float,
    dims: list[int],
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    metric_columns = [c[: -len("_mean")] for c in summary.columns if c.endswith("_mean")]
    nested: dict[str, dict[str, dict[str, float]]] = {}
    spread: dict[str, dict[str, dict[str, float]]] = {}
    for row in summary.itertuples(index=False):
        row_dict = row._asdict()
        nested.setdefault(row.method, {})[str(row.dim)] = {
            m: round(float(row_dict[f"{m}_mean"]), 6) for m in metric_columns
        }
        spread.setdefault(row.method, {})[str(row.dim)] = {
            m: round(float(row_dict[f"{m}_std"]), 6) for m in metric_columns
        }
    recommended = [r.recommended_dims() for r in reports]
    trained = [m for m in METHOD_ORDER if m not in BASELINES]
    per_seed: dict[str, dict[str, dict[str, float]]] = {}
    for seed, report in zip(args.seeds, reports, strict=True):
        pivot = report.pivot()
        for method in (m for m in trained if m in pivot.index):
            per_seed.setdefault(method, {})[str(seed)] = {
                str(m): round(float(pivot.loc[method, m]), 6) for m in dims
            }
    command = (
        "make bench-quality"
        if sys.argv[1:] == []
        else (".venv/bin/python benchmarks/scifact_quality.py " + shlex.join(sys.argv[1:]))
    )
    mean_timing = timings.drop(columns="seed").mean()
    document = {
        "dataset": "scifact (BEIR), test split, 300 queries",
        "model": "all-MiniLM-L6-v2 (384-d, bundled)",
        "seeds": list(args.seeds),
        "metrics": nested,
        "std_over_seeds": spread,
        "ndcg_at_10_per_seed": per_seed,
        "recommended_dim": recommended[0] if len(recommended) == 1 else recommended,
        "timing_seconds_mean": {k: round(float(v), 2) for k, v in mean_timing.items()},
        "wall_seconds": round(wall, 1),
        "command": command,
        "threads": torch.get_num_threads(),
    }
    (out / "results.json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    lines = [
        "# SciFact results: Matryoshka-Adaptor vs baselines",
        "",
        "Generated by `benchmarks/scifact_quality.py`; do not edit by hand.",
        "",
        f"- Command: `{command}`",
        "- Data: BEIR SciFact, trained on `qrels/train.tsv`, scored on `qrels/test.tsv` "
        "(300 queries); base model all-MiniLM-L6-v2 (384-d), embeddings cached once.",
        f"- Seeds: {', '.join(str(s) for s in args.seeds)}"
        + (" (cells: mean ± standard deviation over seeds)" if len(args.seeds) > 1 else ""),
        f"- Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"{'CUDA' if torch.cuda.is_available() else 'CPU only'}; wall time of the whole "
        f"benchmark (all seeds, both configurations, evaluation): {wall:.0f} s",
        "",
    ]
    for metric, title in zip(metric_columns, ("nDCG@10", "Recall@100", "MRR@10"), strict=False):
        lines += [f"## {title}", "", markdown_table(summary, metric, dims, len(args.seeds)), ""]
    if len(args.seeds) > 1:
        lines += [
            "## nDCG@10 per seed (trained adaptors)",
            "",
            "| method | seed | " + " | ".join(str(m) for m in dims) + " |",
            "|" + "---|" * (len(dims) + 2),
        ]
        for method, seeds in per_seed.items():
            for seed, values in seeds.items():
                cells = " | ".join(f"{values[str(m)]:.4f}" for m in dims)
                lines.append(f"| {METHOD_LABELS[method]} | {seed} | {cells} |")
        lines.append("")
        for method, seeds in per_seed.items():
            farthest = max(
                abs(values[str(m)] - nested[method][str(m)]["ndcg_at_10"])
                for values in seeds.values()
                for m in dims
            )
            lines.append(
                f"- {METHOD_LABELS[method]}: every seed within {farthest:.4f} of the mean at "
                "every m."
            )
        lines.append("")
    for prefix, start in (("adaptor", "the SVD rotation"), ("paper", "the identity")):
        kept = timings[f"{prefix}_stage1_kept_start"]
        if kept.any():
            seeds = ", ".join(str(s) for s, k in zip(args.seeds, kept, strict=True) if k)
            lines += [
                f"Stage 1 of `{METHOD_LABELS[f'{prefix}_unsupervised']}` kept its start, "
                f"{start}, at seed(s) {seeds}: no held-out evaluation beat it, so it is not "
                "a trained adaptor and has no row of its own at those seeds (its figures are "
                "the start's). Stage 2 started from it.",
                "",
            ]
    lines += [
        "## Recommended dimension",
        "",
        "Smallest m whose nDCG@10 is at least 99 % of the base embeddings' full-d "
        "nDCG@10 (per seed):",
        "",
    ]
    for seed, rec in zip(args.seeds, recommended, strict=True):
        shown = ", ".join(
            f"{METHOD_LABELS[k]}: {v if v is not None else 'none'}" for k, v in rec.items()
        )
        lines.append(f"- seed {seed}: {shown}")
    lines += [
        "",
        "## Training time during this benchmark",
        "",
        f"As measured inside this run ({torch.get_num_threads()} torch thread(s)); the "
        "dedicated speed benchmark below is the figure to quote.",
        "",
        "| configuration | stage | iterations (mean) | best iteration (mean) | refit steps "
        "(mean) | it/s | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for prefix, label in (("adaptor", "default"), ("paper", "paper")):
        for stage in ("unsupervised", "supervised"):
            key = f"{prefix}_{stage}"
            if f"{key}_seconds" in mean_timing:
                lines.append(
                    f"| {label} | {stage} | {mean_timing[f'{key}_iterations']:.0f} | "
                    f"{mean_timing[f'{key}_best_iteration']:.0f} | "
                    f"{mean_timing[f'{key}_refit_iterations']:.0f} | "
                    f"{mean_timing[f'{key}_it_per_s']:.1f} | "
                    f"{mean_timing[f'{key}_seconds']:.1f} |"
                )
    lines += [
        "",
        f"Full two-stage training, default configuration (both stages, including "
        f"neighbour search and held-out evaluation): "
        f"**{mean_timing['adaptor_train_seconds']:.1f} s** mean over seeds "
        f"(min {timings['adaptor_train_seconds'].min():.1f} s, max "
        f"{timings['adaptor_train_seconds'].max():.1f} s).",
        "",
    ]
    results_md = out / "results.md"
    kept = _kept_sections(results_md)
    results_md.write_text("\n".join(lines) + (f"\n{kept}" if kept else ""))
    print(f"wrote {out / 'results.md'} and {out / 'results.json'}")


def _kept_sections(path: Path) -> str:
    """Everything from the training-speed block to the end of ``path``: the blocks other
    benchmarks maintain (training speed, dense labels) and the sections written around them
    (stage 1 with start_patience), kept across regenerations of the tables above them."""
    from benchmarks.training_speed import BLOCK_START

    text = path.read_text() if path.exists() else ""
    if BLOCK_START not in text:
        return ""
    return BLOCK_START + text.split(BLOCK_START, 1)[1]


if __name__ == "__main__":
    main()
