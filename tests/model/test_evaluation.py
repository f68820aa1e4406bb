"""Evaluation report: baselines, recommended dimension, JSON/CSV/PNG outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from components.baselines import PCAProjection, SVDRotation, Truncation
from components.config import EvaluationConfig
from components.evaluation import EvaluationReport, evaluate_methods


def corpus_and_queries():
    g = torch.Generator().manual_seed(1)
    docs = F.normalize(torch.randn(80, 8, generator=g), dim=-1)
    queries = F.normalize(docs[:20] + 0.05 * torch.randn(20, 8, generator=g), dim=-1)
    doc_ids = [f"d{i}" for i in range(80)]
    query_ids = [f"q{i}" for i in range(20)]
    qrels = pd.DataFrame({"query_id": query_ids, "doc_id": doc_ids[:20], "score": 1})
    return docs, doc_ids, queries, query_ids, qrels


def test_full_d_rotation_and_truncation_agree_and_outputs_are_written(tmp_path: Path) -> None:
    docs, doc_ids, queries, query_ids, qrels = corpus_and_queries()
    report = evaluate_methods(
        {
            "base": Truncation(8),
            "svd_rotation": SVDRotation.fit(docs),
            "pca": PCAProjection.fit(docs),
        },
        docs,
        doc_ids,
        queries,
        query_ids,
        qrels,
        EvaluationConfig(dims=(2, 4, 8)),
    )
    pivot = report.pivot()
    assert pivot.loc["svd_rotation", 8] == pytest.approx(pivot.loc["base", 8])  # cosine kept
    assert set(report.table.columns) == {
        "method",
        "dim",
        "ndcg_at_10",
        "recall_at_100",
        "mrr_at_10",
    }
    paths = report.write(tmp_path)
    document = json.loads(paths["json"].read_text())
    assert set(document["metrics"]["pca"]) == {"2", "4", "8"}
    assert document["metrics"]["base"]["8"]["ndcg_at_10"] == pytest.approx(pivot.loc["base", 8])
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(pd.read_csv(paths["csv"])) == 9
    assert not list(tmp_path.glob(".*tmp*"))


def test_recommended_dimension_is_smallest_m_within_fraction_of_base_full() -> None:
    table = pd.DataFrame(
        {
            "method": ["base"] * 3 + ["adaptor"] * 3,
            "dim": [16, 32, 64] * 2,
            "ndcg_at_10": [0.3, 0.5, 0.60, 0.58, 0.595, 0.62],
            "recall_at_100": 0.0,
            "mrr_at_10": 0.0,
        }
    )
    report = EvaluationReport(table, EvaluationConfig(recommend_fraction=0.99), query_count=1)
    # threshold 0.99 * 0.60 = 0.594
    assert report.recommended_dims() == {"base": 64, "adaptor": 32}


def test_evaluation_rejects_dims_beyond_d_and_id_count_mismatch() -> None:
    docs, doc_ids, queries, query_ids, qrels = corpus_and_queries()
    with pytest.raises(ValueError, match=r"evaluation dims \[16\] exceed"):
        evaluate_methods(
            {"base": Truncation(8)},
            docs,
            doc_ids,
            queries,
            query_ids,
            qrels,
            EvaluationConfig(dims=(4, 16)),
        )
    with pytest.raises(ValueError, match="80 embeddings but 79 ids"):
        evaluate_methods(
            {"base": Truncation(8)},
            docs,
            doc_ids[:-1],
            queries,
            query_ids,
            qrels,
            EvaluationConfig(dims=(4,)),
        )
