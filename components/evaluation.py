"""Per-dimension retrieval evaluation of the adaptor against the baselines.

Every method is an :class:`components.baselines.Embedder`. Retrieval is exact cosine search
on re-normalised prefixes; each method is scored at every m of the grid with nDCG@10,
Recall@100 and MRR@10. The report holds the long table, the nested form
``method → m → metric → value``, and the *recommended dimension* per method: the smallest m
whose nDCG@10 reaches ``recommend_fraction`` (99 %) of the base embeddings' full-d nDCG@10.

Example:
    >>> from components.evaluation import evaluate_methods  # doctest: +SKIP
    >>> report = evaluate_methods({"base": Truncation(384)}, corpus, corpus_ids, queries,
    ...                           query_ids, test_qrels, EvaluationConfig())  # doctest: +SKIP
    >>> report.write("runs/eval")  # metrics.json, metrics.csv, ndcg_vs_dim.png # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from components.adaptor import check_embeddings
from components.atomic import atomic_write, atomic_write_text
from components.baselines import Embedder
from components.config import EvaluationConfig, default_prefix_dims
from components.layout import LONG_CSV, METRICS_FILE, PLOT_PNG
from components.metrics import cosine_top_k, ranking_metrics, relevance_labels

log = logging.getLogger(__name__)

BASE_METHOD = "base"


def metric_names(config: EvaluationConfig) -> tuple[str, str, str]:
    """Column names, e.g. ``ndcg_at_10``, ``recall_at_100``, ``mrr_at_10``."""
    return (f"ndcg_at_{config.ndcg_k}", f"recall_at_{config.recall_k}", f"mrr_at_{config.mrr_k}")


@dataclass(frozen=True)
class EvaluationReport:
    """The long table (method, dim, metrics...) and what is derived from it."""

    table: pd.DataFrame
    config: EvaluationConfig
    query_count: int

    @property
    def ndcg_column(self) -> str:
        return metric_names(self.config)[0]

    def base_full_ndcg(self) -> float:
        base = self.table[self.table["method"] == BASE_METHOD]
        if base.empty:
            raise ValueError(f"the report has no '{BASE_METHOD}' method to compare with")
        return float(base.loc[base["dim"].idxmax(), self.ndcg_column])

    def recommended_dims(self) -> dict[str, int | None]:
        """Per method, the smallest m with nDCG@10 >= fraction × base full-d (None: none)."""
        threshold = self.config.recommend_fraction * self.base_full_ndcg()
        out: dict[str, int | None] = {}
        for method, rows in self.table.groupby("method", sort=False):
            good = rows[rows[self.ndcg_column] >= threshold - 1e-12]
            out[str(method)] = int(good["dim"].min()) if not good.empty else None
        return out

    def nested(self) -> dict[str, dict[str, dict[str, float]]]:
        """``method → str(m) → metric → value``."""
        metrics = list(metric_names(self.config))
        out: dict[str, dict[str, dict[str, float]]] = {}
        for row in self.table.itertuples(index=False):
            out.setdefault(row.method, {})[str(row.dim)] = {
                name: float(getattr(row, name)) for name in metrics
            }
        return out

    def pivot(self, metric: str | None = None) -> pd.DataFrame:
        """One row per method, one column per m."""
        metric = metric or self.ndcg_column
        methods = list(dict.fromkeys(self.table["method"]))
        return self.table.pivot(index="method", columns="dim", values=metric).loc[methods]

    def to_json(self) -> dict:
        return {
            "metrics": self.nested(),
            "recommended_dim": self.recommended_dims(),
            "base_full_ndcg": self.base_full_ndcg(),
            "recommend_fraction": self.config.recommend_fraction,
            "queries": self.query_count,
        }

    def write(self, directory: str | Path) -> dict[str, Path]:
        """``metrics.json``, ``metrics.csv`` and ``ndcg_vs_dim.png``, each written atomically."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / METRICS_FILE, "csv": out / LONG_CSV, "plot": out / PLOT_PNG}
        atomic_write_text(paths["json"], json.dumps(self.to_json(), indent=2, sort_keys=True))
        atomic_write_text(paths["csv"], self.table.to_csv(index=False, float_format="%.6f"))
        plot_ndcg_vs_dim(self, paths["plot"])
        return paths


def plot_ndcg_vs_dim(report: EvaluationReport, path: Path) -> None:
    """nDCG@10 versus m, one line per method, log-2 x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pivot = report.pivot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for method, row in pivot.iterrows():
        ax.plot(row.index, row.values, marker="o", label=method)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(pivot.columns))
    ax.set_xticklabels([str(m) for m in pivot.columns])
    ax.set_xlabel("dimensions kept (m)")
    ax.set_ylabel(report.ndcg_column.replace("_at_", "@"))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        atomic_write(path, lambda handle: fig.savefig(handle, format="png"))
    finally:
        plt.close(fig)


def evaluate_methods(
    methods: Mapping[str, Embedder],
    corpus: torch.Tensor | np.ndarray,
    corpus_ids: list[str],
    queries: torch.Tensor | np.ndarray,
    query_ids: list[str],
    qrels: pd.DataFrame,
    config: EvaluationConfig,
) -> EvaluationReport:
    """Score every method at every m of the grid (default grid: powers of two and d).

    Args:
        methods: name → embedder; include ``"base"`` for the recommended dimension.
        corpus, corpus_ids: ``[n, d]`` base corpus embeddings and their ids.
        queries, query_ids: ``[q, d]`` base query embeddings and their ids.
        qrels: the evaluation labels (``query_id``, ``doc_id``, ``score``).
    """
    corpus = check_embeddings(corpus, "corpus")
    queries = check_embeddings(queries, "queries", corpus.shape[1])
    d = corpus.shape[1]
    if corpus.shape[0] != len(corpus_ids):
        raise ValueError(f"corpus: {corpus.shape[0]} embeddings but {len(corpus_ids)} ids")
    if queries.shape[0] != len(query_ids):
        raise ValueError(f"queries: {queries.shape[0]} embeddings but {len(query_ids)} ids")
    dims = config.dims or default_prefix_dims(d)
    too_large = [m for m in dims if m > d]
    if too_large:
        raise ValueError(f"evaluation dims {too_large} exceed the embedding dimension d={d}")
    rows_idx, relevance = relevance_labels(qrels, query_ids, corpus_ids)
    eval_queries = queries[torch.as_tensor(rows_idx)]
    depth = max(config.ndcg_k, config.recall_k, config.mrr_k)
    ndcg_name, recall_name, mrr_name = metric_names(config)
    rows = []
    log.info(
        "evaluating %d methods at %d sizes: %d queries against %d documents",
        len(methods),
        len(dims),
        len(rows_idx),
        corpus.shape[0],
    )
    for name, method in methods.items():
        started = time.perf_counter()
        # Prefixes of the normalised full-d output equal the normalised prefixes, so each
        # method embeds once and every m is a slice.
        full_corpus = method.embed(corpus, d)
        full_queries = method.embed(eval_queries, d)
        for m in dims:
            ranked = cosine_top_k(
                F.normalize(full_queries[:, :m], dim=-1),
                F.normalize(full_corpus[:, :m], dim=-1),
                depth,
            )
            values = ranking_metrics(
                ranked, relevance, config.ndcg_k, config.recall_k, config.mrr_k
            )
            rows.append(
                {
                    "method": name,
                    "dim": int(m),
                    ndcg_name: values["ndcg"],
                    recall_name: values["recall"],
                    mrr_name: values["mrr"],
                }
            )
        log.info("evaluated %s in %.1f s", name, time.perf_counter() - started)
    return EvaluationReport(table=pd.DataFrame(rows), config=config, query_count=len(rows_idx))
