"""The stage functions on a tiny dataset with synthetic embeddings (no model runs).

Covers outputs and metadata of every stage, the skipped finetune without training labels,
atomic outputs (a failed stage leaves nothing finished-looking and removes a stale output),
and the embed stage's Great Expectations suite (NaN, wrong dimension).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers.embedding_servers import OpenAITestServer
from helpers.stages import (
    BAD,
    DIM,
    FAST,
    REPO,
    TINY,
    copy_dataset,
    one_thread,  # noqa: F401 - fixture
    synthetic_embeddings,
    unit_rows,
)

import components.embedding as embedding_package
from components.adaptor import load_adaptor
from components.data import load_dataset
from components.embedding import EmbeddingArtifacts, load_embeddings
from components.embedding.providers import close_providers
from components.params import ParamsError, PipelineParams, load_params
from components.stages import (
    SKIP_MESSAGE,
    STAGE_NAMES,
    RunLayout,
    StageError,
    run_embed,
    run_evaluate,
    run_finetune,
    run_pretrain,
    run_stage,
    run_validate,
)
from components.stages.common import kept_start
from components.stages.embed import declared_dimension
from components.stages.evaluate import METHOD_ORDER, format_results, load_results
from components.validation import DataValidationError

pytestmark = pytest.mark.usefixtures("one_thread")


def fast_params(**extra: Any) -> PipelineParams:
    return load_params(REPO / "params.yaml", {**FAST, **extra})


@pytest.fixture
def embeddings(tmp_path: Path) -> Path:
    out = tmp_path / "runs" / "embeddings"
    synthetic_embeddings(out)
    return out


# --- validate ----------------------------------------------------------------------------
def test_validate_passes_and_writes_fingerprint_marker(tmp_path: Path) -> None:
    out = tmp_path / "validation"
    report = run_validate(TINY, fast_params(), out)
    assert report.success
    marker = json.loads((out / "passed.json").read_text())
    assert marker["fingerprint"] == load_dataset(TINY).fingerprint()
    assert marker["qrels"] == {"test": 12, "train": 10}
    assert (out / "summary.txt").is_file() and (out / "report.json").is_file()
    first = (out / "passed.json").read_bytes()
    run_validate(TINY, fast_params(**{"validation.sample_rows": 3}), out)
    assert (out / "passed.json").read_bytes() == first  # deterministic: DVC skips embed


def test_validate_failure_removes_stale_marker(tmp_path: Path) -> None:
    out = tmp_path / "validation"
    out.mkdir()
    (out / "passed.json").write_text("{}")  # from an earlier, good dataset
    with pytest.raises(DataValidationError) as info:
        run_validate(BAD / "duplicate_ids", fast_params(), out)
    assert "duplicate_ids/corpus.jsonl, row 4, field '_id': 'd2'" in str(info.value)
    assert not (out / "passed.json").exists()
    assert "duplicate_ids/corpus.jsonl, row 4" in (out / "summary.txt").read_text()


# --- pretrain / finetune / evaluate ------------------------------------------------------
def test_training_and_evaluation_stages(tmp_path: Path, embeddings: Path) -> None:
    params = fast_params()
    pre = run_pretrain(embeddings, params, tmp_path / "pretrain")
    assert pre.adaptor_dir == tmp_path / "pretrain" / "adaptor" and not pre.skipped
    history = json.loads((tmp_path / "pretrain" / "history.json").read_text())
    assert history["stage"] == "pretrain" and history["skipped"] is False
    assert history["summary"]["iterations"] == 12
    assert {"step", "loss", "topk", "pairwise", "reconstruction"} <= set(history["history"][0])
    assert history["evaluations"] and "heldout_neighbour_ndcg" in history["evaluations"][0]
    adaptor, meta = load_adaptor(pre.adaptor_dir, expected_dim=DIM)
    assert meta["stage"] == "pretrain" and meta["provider"] == "synthetic"
    assert meta["base_model"] == "random-16" and meta["dim"] == DIM
    assert meta["prefix_dims"] == [4, 8, 16]
    assert meta["dataset_fingerprint"] == load_dataset(TINY).fingerprint()

    fin = run_finetune(TINY, embeddings, tmp_path / "pretrain", params, tmp_path / "finetune")
    assert not fin.skipped
    _, meta = load_adaptor(tmp_path / "finetune" / "adaptor", expected_dim=DIM)
    assert meta["stage"] == "finetune" and meta["train_split"] == "train"
    history = json.loads((tmp_path / "finetune" / "history.json").read_text())
    assert "ranking" in history["history"][0]

    result = run_evaluate(
        TINY,
        embeddings,
        tmp_path / "pretrain",
        tmp_path / "finetune",
        params,
        tmp_path / "evaluation",
    )
    out = tmp_path / "evaluation"
    for name in ("metrics.json", "metrics.csv", "ndcg_vs_dim.png", "ndcg_vs_dim.csv", "table.txt"):
        assert (out / name).is_file(), name
    metrics = load_results(out)
    assert list(metrics["metrics"]) == list(METHOD_ORDER)
    assert set(metrics["metrics"]["base"]) == {"4", "8", "16"}
    assert metrics["queries"] == 6 and metrics["test_split"] == "test"
    wide = pd.read_csv(out / "ndcg_vs_dim.csv")
    assert list(wide.columns) == ["dim", *METHOD_ORDER]
    assert wide["dim"].tolist() == [4, 8, 16]
    long = pd.read_csv(out / "metrics.csv")
    assert set(long.columns) == {"method", "dim", "ndcg_at_10", "recall_at_100", "mrr_at_10"}
    assert result.table == (out / "table.txt").read_text().rstrip("\n")
    assert "recommended: " in result.table and "adaptor_supervised" in result.table


def test_a_stage_one_that_kept_its_start_is_reported_as_that_baseline(
    tmp_path: Path, embeddings: Path
) -> None:
    # A learning rate too small to move any score: no held-out evaluation beats the start.
    params = fast_params(
        **{
            "method.train.unsupervised.learning_rate": 1e-12,
            "method.train.unsupervised.start_patience": 1,
        }
    )
    run_pretrain(embeddings, params, tmp_path / "pretrain")
    assert kept_start(tmp_path / "pretrain") == "svd_rotation"
    result = run_evaluate(TINY, embeddings, tmp_path / "pretrain", None, params, tmp_path / "ev")
    assert result.metrics["untrained"] == {"adaptor_unsupervised": "svd_rotation"}
    rows = [line for line in result.table.splitlines() if line.startswith("adaptor_unsupervised")]
    assert rows and rows[0].split()[0] == "adaptor_unsupervised*"
    assert "* adaptor_unsupervised is svd_rotation unchanged, not a trained adaptor" in result.table
    assert "recommended: adaptor_unsupervised" not in result.table
    history_path = tmp_path / "pretrain" / "history.json"
    history = json.loads(history_path.read_text())
    history["summary"]["best_iteration"] = 4  # as if a later step had beaten the start
    history_path.write_text(json.dumps(history))
    assert kept_start(tmp_path / "pretrain") is None


def test_finetune_skipped_without_training_labels(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = copy_dataset(tmp_path / "data", drop_train=True)
    embeddings = tmp_path / "embeddings"
    synthetic_embeddings(embeddings, data)
    params = fast_params()
    run_pretrain(embeddings, params, tmp_path / "pretrain")
    stale = tmp_path / "finetune" / "adaptor"
    stale.mkdir(parents=True)
    (stale / "adaptor.json").write_text("{}")  # an adaptor from an earlier labelled run
    with caplog.at_level(logging.WARNING):
        fin = run_finetune(data, embeddings, tmp_path / "pretrain", params, tmp_path / "finetune")
    assert fin.skipped and fin.result is None
    assert SKIP_MESSAGE.format(split="train") in caplog.text
    assert "qrels/train.tsv" in caplog.text
    history = json.loads((tmp_path / "finetune" / "history.json").read_text())
    assert history["skipped"] is True and history["stage"] == "finetune"
    assert not (tmp_path / "finetune" / "adaptor").exists()
    run_evaluate(
        data,
        embeddings,
        tmp_path / "pretrain",
        tmp_path / "finetune",
        params,
        tmp_path / "evaluation",
    )
    metrics = load_results(tmp_path / "evaluation")
    assert "adaptor_supervised" not in metrics["metrics"]
    assert "adaptor_unsupervised" in metrics["metrics"]


def test_empty_train_split_is_skipped_too(tmp_path: Path, embeddings: Path) -> None:
    data = copy_dataset(tmp_path / "data")
    (data / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n")
    emb = tmp_path / "emb"
    synthetic_embeddings(emb, data)
    fin = run_finetune(data, emb, tmp_path / "nowhere", fast_params(), tmp_path / "finetune")
    assert fin.skipped  # the pretrain adaptor is not even needed


def test_failed_stage_removes_stale_output(tmp_path: Path) -> None:
    out = tmp_path / "pretrain"
    (out / "adaptor").mkdir(parents=True)
    (out / "history.json").write_text('{"stage": "pretrain"}')
    with pytest.raises(StageError, match="run the embed stage first"):
        run_pretrain(tmp_path / "missing-embeddings", fast_params(), out)
    assert not out.exists()
    assert not list(tmp_path.glob(".pretrain.partial-*"))


def test_training_error_is_a_stage_error(tmp_path: Path, embeddings: Path) -> None:
    params = fast_params(**{"method.loss.prefix_dims": [8, 32]})  # 32 > d = 16
    with pytest.raises(StageError, match="exceed the embedding dimension"):
        run_pretrain(embeddings, params, tmp_path / "pretrain")
    assert not (tmp_path / "pretrain").exists()


def test_embeddings_from_other_data_are_rejected(tmp_path: Path, embeddings: Path) -> None:
    data = copy_dataset(tmp_path / "data")
    with open(data / "corpus.jsonl", "a") as handle:
        handle.write(json.dumps({"_id": "d40", "title": "", "text": "new document"}) + "\n")
    run_pretrain(embeddings, fast_params(), tmp_path / "pretrain")
    with pytest.raises(StageError, match="re-run the embed stage"):
        run_finetune(data, embeddings, tmp_path / "pretrain", fast_params(), tmp_path / "finetune")
    assert not (tmp_path / "finetune").exists()


def test_evaluate_needs_test_labels(tmp_path: Path) -> None:
    data = copy_dataset(tmp_path / "data")
    (data / "qrels" / "test.tsv").unlink()
    emb = tmp_path / "emb"
    synthetic_embeddings(emb, data)
    run_pretrain(emb, fast_params(), tmp_path / "pretrain")
    with pytest.raises(StageError, match="no test labels"):
        run_evaluate(data, emb, tmp_path / "pretrain", None, fast_params(), tmp_path / "ev")


def test_run_stage_uses_the_layout(tmp_path: Path) -> None:
    layout = RunLayout(root=tmp_path / "runs")
    synthetic_embeddings(layout.embeddings)
    run_stage("pretrain", fast_params(), layout=layout)
    assert (layout.pretrain / "adaptor" / "adaptor.json").is_file()
    with pytest.raises(ParamsError, match="unknown stage"):
        run_stage("train", fast_params(), layout=layout)
    assert STAGE_NAMES == ("validate", "embed", "pretrain", "finetune", "evaluate")


def test_format_results_marks_missing_and_recommendation() -> None:
    metrics = {
        "metrics": {
            "base": {"8": {"ndcg_at_10": 0.5}, "16": {"ndcg_at_10": 0.6}},
            "adaptor_unsupervised": {"8": {"ndcg_at_10": 0.6}},
        },
        "recommended_dim": {"base": 16, "adaptor_unsupervised": 8},
        "base_full_ndcg": 0.6,
        "recommend_fraction": 0.99,
    }
    text = format_results(metrics)
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[2:4]}
    assert rows == {"base": ["0.5000", "0.6000"], "adaptor_unsupervised": ["0.6000", "-"]}
    assert text.startswith("nDCG@10 by dimensions kept (m)")
    assert text.endswith("recommended: adaptor_unsupervised at m=8")


# --- embed -------------------------------------------------------------------------------
def _fake_extraction(monkeypatch: pytest.MonkeyPatch, corrupt: str) -> None:
    """Replace extraction by one that writes files and returns corrupted matrices."""

    def fake(dataset: Any, config: Any, out_dir: Path) -> EmbeddingArtifacts:
        out = Path(out_dir)
        rng = np.random.default_rng(0)
        d = DIM - 4 if corrupt == "dim" else DIM
        corpus = unit_rows(rng.standard_normal((len(dataset.corpus), d)))
        queries = unit_rows(rng.standard_normal((len(dataset.queries), d)))
        if corrupt == "nan":
            corpus[2, 5] = np.nan
        np.save(out / "corpus.npy", corpus)
        (out / "meta.json").write_text("{}")
        return EmbeddingArtifacts(
            out,
            dataset.corpus["id"].tolist(),
            corpus,
            dataset.queries["id"].tolist(),
            queries,
            {"provider": "fake", "model": "fake"},
        )

    monkeypatch.setattr(embedding_package, "embed_dataset", fake)


@pytest.mark.parametrize(
    "corrupt, expected",
    [
        ("nan", "corpus.npy, row 3, field 'vector': nan at dim 5"),
        ("dim", "corpus.npy, row 1, field 'dim': 12"),
    ],
)
def test_embed_stage_rejects_bad_embeddings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corrupt: str, expected: str
) -> None:
    _fake_extraction(monkeypatch, corrupt)
    out = tmp_path / "runs" / "embeddings"
    out.mkdir(parents=True)
    (out / "meta.json").write_text("{}")  # stale output of an earlier run
    params = fast_params(**{"embedding.dimensions": DIM})
    with pytest.raises(DataValidationError) as info:
        run_embed(TINY, params, out)
    assert expected in str(info.value)
    assert not out.exists()
    assert not list(out.parent.glob(".embeddings.partial-*"))


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAITestServer]:
    monkeypatch.setenv("STAGE_TEST_KEY", "stage-test-key-0001")
    with OpenAITestServer(api_key="stage-test-key-0001", dim=DIM) as srv:
        yield srv
    close_providers()


def openai_overrides(server: OpenAITestServer, cache: Path) -> dict[str, Any]:
    return {
        "embedding.provider": "openai",
        "embedding.model": "stage-model",
        "embedding.base_url": server.base_url,
        "embedding.api_key_env": "STAGE_TEST_KEY",
        "embedding.cache_dir": str(cache),
        "embedding.progress": "off",
        "embedding.dimensions": DIM,
    }


def test_embed_stage_with_an_api_provider(tmp_path: Path, server: OpenAITestServer) -> None:
    params = fast_params(**openai_overrides(server, tmp_path / "cache"))
    out = tmp_path / "embeddings"
    artifacts = run_embed(TINY, params, out)
    assert artifacts.out_dir == out and artifacts.corpus.shape == (40, DIM)
    loaded = load_embeddings(out)
    assert loaded.meta["provider"] == "openai" and loaded.meta["model"] == "stage-model"
    assert (out / "validation" / "summary.txt").is_file()
    requests = server.received
    run_embed(TINY, params, out)  # cached: no request
    assert server.received == requests


def test_declared_dimension_without_loading_the_model() -> None:
    params = fast_params(**{"embedding.dimensions": None})
    assert declared_dimension(params.embedding) == 384  # bundled MiniLM
    openai = fast_params(**{"embedding.provider": "openai", "embedding.model": "m"}).embedding
    assert declared_dimension(openai) is None
