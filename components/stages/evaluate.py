"""Stage ``evaluate``: every method at every prefix size m on the test split.

Methods: every training-free baseline of :data:`components.baselines.BASELINES` (``base``
truncation, ``pca``, ``svd_rotation``, ``pca_layernorm``, ``whitening``), fitted on the
corpus, then ``adaptor_unsupervised`` (the pretrain adaptor) and ``adaptor_supervised`` (the
finetune adaptor, when it was trained).

Output ``runs/evaluation/``:

* ``metrics.json``: ``metrics`` (method -> m -> nDCG/Recall/MRR), ``recommended_dim``,
  ``base_full_ndcg``, ``queries``, plus provenance (dataset, fingerprint, provider, model,
  d); DVC ``metrics``.
* ``metrics.csv``: the long table (method, dim, metrics).
* ``ndcg_vs_dim.csv``: wide table ``dim`` + one nDCG@10 column per method; DVC ``plots``.
* ``ndcg_vs_dim.png``: the same as a picture.
* ``table.txt``: the printable per-dimension table (:func:`format_results`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.atomic import staged_directory
from components.baselines import BASELINE_NAMES
from components.layout import ADAPTOR_DIR, DEFAULT_LAYOUT, METRICS_FILE, TABLE_TXT, WIDE_CSV
from components.params import PipelineParams
from components.stages.common import (
    StageError,
    finetune_skipped,
    kept_start,
    load_matching_inputs,
    read_json,
    write_json,
)

if TYPE_CHECKING:
    from components.evaluation import EvaluationReport

log = logging.getLogger("components.stages.evaluate")

#: Rows of the table and columns of the plot: the baselines, then the adaptors.
METHOD_ORDER = (*BASELINE_NAMES, "adaptor_unsupervised", "adaptor_supervised")


@dataclass(frozen=True)
class EvaluationOutput:
    """What the evaluate stage wrote: the report, its JSON form and the printable table."""

    out_dir: Path
    report: EvaluationReport
    metrics: dict[str, Any]
    table: str


def run_evaluate(
    dataset_dir: str | Path,
    embeddings_dir: str | Path,
    pretrain_dir: str | Path,
    finetune_dir: str | Path | None,
    params: PipelineParams,
    out_dir: str | Path = DEFAULT_LAYOUT.evaluation,
) -> EvaluationOutput:
    """Evaluate every baseline and the adaptors on ``qrels/<dataset.test_split>``.

    Args:
        dataset_dir: the dataset (for the test labels; checked against the embeddings'
            fingerprint).
        embeddings_dir / pretrain_dir: the ``embed`` / ``pretrain`` outputs.
        finetune_dir: the ``finetune`` output; ``None``, or a skipped finetune, leaves out
            ``adaptor_supervised``.
        params: pipeline params (``evaluation:``, ``dataset.test_split``).
        out_dir: output directory, replaced atomically.

    Raises:
        StageError: a missing input, embeddings of other data, no test labels, or an
            evaluation grid the embeddings cannot serve (m > d).
    """
    import torch

    from components.adaptor import load_adaptor
    from components.baselines import fit_baselines
    from components.evaluation import evaluate_methods

    split = params.dataset.test_split
    out = Path(out_dir)
    with staged_directory(out, clear_first=True) as staging:
        artifacts, dataset = load_matching_inputs(embeddings_dir, dataset_dir)
        labels = dataset.qrels.get(split)
        if labels is None or labels.empty:
            raise StageError(
                f"{Path(dataset_dir) / 'qrels' / f'{split}.tsv'}: no test labels "
                f"(dataset.test_split={split!r}); evaluation needs them"
            )
        d = artifacts.dimensions
        corpus = torch.from_numpy(artifacts.corpus)
        methods: dict[str, Any] = dict(fit_baselines(corpus))
        pretrained = Path(pretrain_dir) / ADAPTOR_DIR
        if not (pretrained / "adaptor.json").is_file():
            raise StageError(f"{pretrained}: no pretrained adaptor; run the pretrain stage first")
        methods["adaptor_unsupervised"], _ = load_adaptor(pretrained, expected_dim=d)
        start = kept_start(pretrain_dir)
        if finetune_dir is not None and not finetune_skipped(finetune_dir):
            methods["adaptor_supervised"], _ = load_adaptor(
                Path(finetune_dir) / ADAPTOR_DIR, expected_dim=d
            )
        try:
            report = evaluate_methods(
                methods,
                corpus,
                artifacts.corpus_ids,
                torch.from_numpy(artifacts.queries),
                artifacts.query_ids,
                labels,
                params.evaluation,
            )
        except ValueError as exc:
            raise StageError(f"evaluate: {exc}") from None
        report.write(staging)
        metrics = {**report.to_json(), **_provenance(artifacts.meta, split, list(methods))}
        if start is not None:
            metrics["untrained"] = {"adaptor_unsupervised": start}
            log.info(
                "adaptor_unsupervised is %s unchanged: stage 1 kept its start (no held-out "
                "evaluation beat it)",
                start,
            )
        write_json(staging / METRICS_FILE, metrics)
        write_wide_csv(report, staging / WIDE_CSV)
        table = format_results(metrics)
        (staging / TABLE_TXT).write_text(table + "\n", encoding="utf-8")
    log.info("evaluation written to %s", out)
    return EvaluationOutput(out, report, metrics, table)


def _provenance(meta: dict[str, Any], split: str, methods: list[str]) -> dict[str, Any]:
    return {
        "dataset": meta.get("dataset"),
        "dataset_fingerprint": meta.get("dataset_fingerprint"),
        "provider": meta.get("provider"),
        "model": meta.get("model"),
        "dimensions": meta.get("dimensions"),
        "test_split": split,
        "methods": methods,
    }


def write_wide_csv(report: EvaluationReport, path: Path) -> None:
    """``dim`` + one nDCG@10 column per method (what ``dvc plots`` draws)."""
    pivot = report.pivot().T  # rows: dim, columns: methods
    pivot.index.name = "dim"
    pivot.columns.name = None
    tmp = path.with_name(f".{path.name}.tmp")
    pivot.to_csv(tmp, float_format="%.6f")
    tmp.replace(path)


def _ndcg_key(metrics: dict[str, Any]) -> str:
    for by_dim in metrics.get("metrics", {}).values():
        for values in by_dim.values():
            for key in values:
                if key.startswith("ndcg_at_"):
                    return key
    return "ndcg_at_10"


def format_results(metrics: dict[str, Any]) -> str:
    """A plain-text table of nDCG@10 per method (rows) and m (columns), then the recommended
    dimension per method and overall, from a ``metrics.json`` payload."""
    table: dict[str, dict[str, dict[str, float]]] = metrics.get("metrics") or {}
    if not table:
        return "no metrics"
    key = _ndcg_key(metrics)
    methods = [m for m in METHOD_ORDER if m in table] + [m for m in table if m not in METHOD_ORDER]
    dims = sorted({int(m) for by_dim in table.values() for m in by_dim})
    width = max(len(m) for m in methods) + 2
    title = key.replace("ndcg", "nDCG").replace("_at_", "@")
    where = f"{metrics.get('dataset') or 'dataset'}"
    if metrics.get("test_split"):
        where += f", {metrics['test_split']} split"
    if metrics.get("queries") is not None:
        where += f", {metrics['queries']} queries"
    lines = [
        f"{title} by dimensions kept (m) [{where}]",
        "method".ljust(width) + "".join(f"{m:>8}" for m in dims),
    ]
    untrained: dict[str, str] = metrics.get("untrained") or {}
    for method in methods:
        cells = []
        for m in dims:
            value = table[method].get(str(m), {}).get(key)
            cells.append(f"{value:8.4f}" if value is not None else f"{'-':>8}")
        name = f"{method}*" if method in untrained else method
        lines.append(name.ljust(width) + "".join(cells))
    for method, start in untrained.items():
        lines.append(
            f"* {method} is {start} unchanged, not a trained adaptor: stage 1 stopped when "
            "no held-out evaluation beat its start"
        )
    recommended: dict[str, int | None] = metrics.get("recommended_dim") or {}
    fraction = metrics.get("recommend_fraction")
    base = metrics.get("base_full_ndcg")
    if recommended:
        lines.append("")
        criterion = "smallest m"
        if fraction is not None and base is not None:
            criterion += f" with {title} >= {fraction:.0%} of base full-d ({base:.4f})"
        lines.append(f"recommended dimension ({criterion}):")
        for method in methods:
            if method in recommended:
                dim = recommended[method]
                lines.append(f"  {method.ljust(width)}{dim if dim is not None else 'none'}")
        best = best_recommendation(metrics)
        if best is not None:
            lines.append(f"recommended: {best[0]} at m={best[1]}")
    return "\n".join(lines)


def best_recommendation(metrics: dict[str, Any]) -> tuple[str, int] | None:
    """The method reaching the target with the fewest dimensions (ties: the later, trained
    method in :data:`METHOD_ORDER`, i.e. the adaptor over the baselines); a stage 1 that
    kept its start (``untrained``) is not a candidate."""
    untrained = metrics.get("untrained") or {}  # the start itself: its baseline competes
    recommended = {
        k: v
        for k, v in (metrics.get("recommended_dim") or {}).items()
        if v is not None and k not in untrained
    }
    if not recommended:
        return None
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    method = min(recommended, key=lambda m: (recommended[m], -rank.get(m, -1)))
    return method, int(recommended[method])


def load_results(evaluation_dir: str | Path = DEFAULT_LAYOUT.evaluation) -> dict[str, Any]:
    """``metrics.json`` of the last evaluation."""
    payload = read_json(Path(evaluation_dir) / METRICS_FILE, "evaluate")
    if not isinstance(payload, dict):
        raise StageError(f"{Path(evaluation_dir) / METRICS_FILE}: expected a JSON object")
    return payload


__all__ = [
    "EvaluationOutput",
    "best_recommendation",
    "format_results",
    "load_results",
    "run_evaluate",
    "write_wide_csv",
]
