"""Logging a finished pipeline's outputs (the ``runs/`` layout) into a :class:`PipelineRun`.

What goes where in the MLflow run:

==============================  ==========================================================
run content                      from
==============================  ==========================================================
``{method}/{metric}/dim_{m}``    ``runs/evaluation/metrics.json``
``recommended_dim/{method}``     same
``train/{stage}/{term}``         ``runs/<stage>/history.json`` (per step)
``evaluation/`` artifacts        ``metrics.json``, ``metrics.csv``, ``ndcg_vs_dim.png``,
                                 ``table.md`` (the per-dimension table)
``validation/`` artifacts        ``runs/validation/`` (summary.txt, gx_results, data_docs)
``validation/embeddings/``       ``runs/embeddings/validation/``
``training/<stage>/``            each ``history.json``
``embeddings/meta.json``         provider, model, dimension, counts
==============================  ==========================================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from components.layout import RunLayout
from components.tracking.run import PipelineRun

#: The training stages whose ``history.json`` is logged as curves.
TRAINING_STAGES = ("pretrain", "finetune")


def read_json(path: str | Path) -> dict[str, Any] | None:
    """A JSON file's content, or None when it does not exist."""
    path = Path(path)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def format_dim_table(report: Mapping[str, Any], metric: str = "ndcg_at_10") -> str:
    """A Markdown table of ``metric`` per method (rows) and dimension (columns), with each
    method's recommended dimension in the last column."""
    metrics: Mapping[str, Mapping[str, Mapping[str, float]]] = report.get("metrics") or {}
    dims = sorted({int(d) for per_dim in metrics.values() for d in per_dim})
    recommended = report.get("recommended_dim") or {}
    header = ["method", *[f"m={d}" for d in dims], "recommended m"]
    lines = [
        f"{metric} by kept dimensions m",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", *["---:"] * (len(dims) + 1)]) + "|",
    ]
    for method, per_dim in metrics.items():
        cells = [method]
        for d in dims:
            value = (per_dim.get(str(d)) or {}).get(metric)
            cells.append("" if value is None else f"{float(value):.4f}")
        rec = recommended.get(method)
        cells.append("-" if rec is None else str(rec))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def log_pipeline_outputs(run: PipelineRun, outputs: RunLayout) -> dict[str, Any]:
    """Log metrics, curves and artifacts of a completed pipeline; returns a summary.

    Raises FileNotFoundError when the evaluation's ``metrics.json`` is missing: a run
    without results must not be marked successful.
    """
    summary: dict[str, Any] = {"training_points": {}, "skipped_stages": []}
    metrics_path = outputs.metrics_json
    report = read_json(metrics_path)
    if report is None:
        raise FileNotFoundError(f"{metrics_path}: the evaluation results are missing")
    summary["metrics"] = run.log_evaluation(report)
    table = format_dim_table(report)
    summary["table"] = table
    run.log_artifact_path(outputs.evaluation, "evaluation")
    run.log_text(table + "\n", "evaluation/table.md")

    for stage in TRAINING_STAGES:
        path = outputs.history(stage)
        history = read_json(path)
        if history is None:
            continue
        if history.get("skipped"):
            summary["skipped_stages"].append(stage)
            run.log_tags(
                {
                    f"train.{stage}.skipped": "true",
                    f"train.{stage}.reason": str(history.get("reason", "")),
                }
            )
        else:
            summary["training_points"][stage] = run.log_training(stage, history)
        run.log_artifact_path(path, f"training/{stage}")

    run.log_artifact_path(outputs.validation, "validation")
    run.log_artifact_path(outputs.embeddings_validation, "validation/embeddings")
    run.log_artifact_path(outputs.embeddings_meta, "embeddings")
    return summary
