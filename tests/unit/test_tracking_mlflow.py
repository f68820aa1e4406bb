"""components.tracking against a real MLflow SQLite store (one database per test session)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.layout import RunLayout
from components.tracking import (
    DATASET_FINGERPRINT_TAG,
    FAILURE_MESSAGE_TAG,
    FAILURE_STAGE_TAG,
    PipelineRun,
    log_pipeline_outputs,
    read_run_lineage,
)


@pytest.fixture(autouse=True)
def mlflow_store(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Point MLflow at one SQLite DB per session (migrations cost 5-13 s per new DB)."""
    store = tmp_path_factory.getbasetemp() / "mlflow-store"
    store.mkdir(exist_ok=True)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield uri


def _params(experiment: str | None = None) -> dict:
    return {
        "mlflow": {"experiment_name": experiment or f"test-{uuid.uuid4().hex[:8]}"},
        "method": {"train": {"seed": 0}, "loss": {"prefix_dims": [4, 8]}},
        "embedding": {"provider": "local", "api_key_env": None},
    }


def _write_outputs(root: Path, skipped_finetune: bool = False) -> RunLayout:
    outputs = RunLayout().under(root)
    evaluation = outputs.evaluation
    evaluation.mkdir(parents=True)
    report = {
        "metrics": {
            "base": {"4": {"ndcg_at_10": 0.3}, "8": {"ndcg_at_10": 0.4}},
            "adaptor_unsupervised": {"4": {"ndcg_at_10": 0.35}, "8": {"ndcg_at_10": 0.41}},
        },
        "recommended_dim": {"base": 8, "adaptor_unsupervised": 8},
    }
    (evaluation / "metrics.json").write_text(json.dumps(report))
    (evaluation / "metrics.csv").write_text("method,dim,ndcg_at_10\nbase,4,0.3\n")
    (evaluation / "ndcg_vs_dim.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    validation = outputs.validation
    (validation / "gx_results").mkdir(parents=True)
    (validation / "summary.txt").write_text("Data validation passed\n")
    (validation / "gx_results" / "corpus.json").write_text("{}")
    (outputs.embeddings / "validation").mkdir(parents=True)
    (outputs.embeddings / "validation" / "summary.txt").write_text("ok\n")
    (outputs.embeddings / "meta.json").write_text('{"provider": "local"}')
    pre = outputs.history("pretrain")
    pre.parent.mkdir(parents=True)
    pre.write_text(
        json.dumps(
            {
                "stage": "unsupervised",
                "best_iteration": 2,
                "best_score": 0.5,
                "score_name": "neighbour_ndcg_at_10",
                "history": [
                    {
                        "step": s,
                        "loss": 1.0 / s,
                        "topk": 0.1,
                        "pairwise": 0.2,
                        "reconstruction": 0.3,
                    }
                    for s in range(1, 4)
                ],
                "evaluations": [{"step": 2, "score": 0.5}],
            }
        )
    )
    fine = outputs.history("finetune")
    fine.parent.mkdir(parents=True)
    fine.write_text(
        json.dumps(
            {"skipped": True, "reason": "no training labels"}
            if skipped_finetune
            else {"history": [], "evaluations": []}
        )
    )
    return outputs


def test_full_run_is_logged_and_finished(tmp_path: Path) -> None:
    run = PipelineRun.start(
        root=tmp_path, params=_params(), run_name="unit", tags={"provider": "local"}
    )
    assert run.status == "RUNNING"
    flat = run.log_params(_params())
    assert flat["method.loss.prefix_dims"] == "[4, 8]"
    outputs = _write_outputs(tmp_path, skipped_finetune=True)
    summary = log_pipeline_outputs(run, outputs)
    assert summary["skipped_stages"] == ["finetune"]
    assert summary["training_points"] == {"pretrain": 3 * 4 + 1 + 2}
    run.log_dataset(name="tiny", source=tmp_path / "data", fingerprint="ab" * 32)
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  embed:\n    outs:\n    - path: runs/embeddings\n"
        "      hash: md5\n      md5: 1234.dir\n"
    )
    tags = run.log_lineage(
        tmp_path, code_root=Path(__file__).parents[2], dataset_fingerprint="ab" * 32
    )
    assert len(tags["git_commit"]) == 40 and len(tags["dvc_lock_digest"]) == 64
    assert not [key for key in tags if key.startswith("dvc.")]  # no tag per hash
    lineage = read_run_lineage(run.client, run.run_id)  # the one lineage document
    assert lineage["dvc_lock"]["stages"]["embed"]["outs"] == {"runs/embeddings": "1234.dir"}
    assert lineage["dvc_lock"]["sha256"] == tags["dvc_lock_digest"]
    assert lineage["git"]["commit"] == tags["git_commit"]
    assert lineage["dataset_fingerprint"] == "ab" * 32
    assert read_run_lineage(run.client, None) is None
    run.finish()

    client = run.client
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params["method.train.seed"] == "0"
    assert got.data.metrics["adaptor_unsupervised/ndcg_at_10/dim_4"] == 0.35
    assert got.data.metrics["recommended_dim/base"] == 8
    curve = client.get_metric_history(run.run_id, "train/pretrain/loss")
    assert [(m.step, m.value) for m in curve] == [(1, 1.0), (2, 0.5), (3, 1 / 3)]
    assert got.data.tags["train.finetune.skipped"] == "true"
    assert got.data.tags[DATASET_FINGERPRINT_TAG] == "ab" * 32
    assert got.data.tags["git_commit"]
    inputs = got.inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.digest == "ab" * 16
    assert inputs[0].dataset.name == "tiny"
    artifacts = {a.path for a in client.list_artifacts(run.run_id, "evaluation")}
    assert {
        "evaluation/metrics.json",
        "evaluation/metrics.csv",
        "evaluation/ndcg_vs_dim.png",
        "evaluation/table.md",
    } <= artifacts
    validation = {a.path for a in client.list_artifacts(run.run_id, "validation")}
    assert {
        "validation/summary.txt",
        "validation/gx_results",
        "validation/embeddings",
    } <= validation
    # Default-store runs keep artifacts next to the database.
    assert got.info.artifact_uri.startswith("file://")


def test_failed_run_is_marked_failed_with_reason(tmp_path: Path) -> None:
    run = PipelineRun.start(root=tmp_path, params=_params())
    try:
        raise ValueError("corpus.jsonl, row 3, field '_id': duplicate id 'd1'")
    except ValueError as exc:
        run.fail(exc, stage="validate")
    got = run.client.get_run(run.run_id)
    assert got.info.status == "FAILED"
    assert got.data.tags[FAILURE_STAGE_TAG] == "validate"
    assert "row 3" in got.data.tags[FAILURE_MESSAGE_TAG]
    paths = {a.path for a in run.client.list_artifacts(run.run_id)}
    assert "failure.txt" in paths
    assert "ui --backend-store-uri" in run.ui_hint()
    assert read_run_lineage(run.client, run.run_id) is None  # it never logged one


def test_missing_results_raise(tmp_path: Path) -> None:
    run = PipelineRun.start(root=tmp_path, params=_params())
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        log_pipeline_outputs(run, RunLayout().under(tmp_path))
    run.fail("no results", stage="evaluate")
    assert run.status == "FAILED"


def test_same_experiment_is_reused(tmp_path: Path) -> None:
    name = f"reuse-{uuid.uuid4().hex[:8]}"
    first = PipelineRun.start(root=tmp_path, params=_params(name))
    second = PipelineRun.start(root=tmp_path, params=_params(name))
    assert first.experiment_id == second.experiment_id
    assert first.run_id != second.run_id


def test_a_stage_one_only_run_that_kept_its_start_registers_nothing(tmp_path: Path) -> None:
    # Issue #14: the rotation is a baseline, never a registered "trained adaptor".
    from components.registry import register_pipeline_run

    run = PipelineRun.start(root=tmp_path, params=_params())
    outputs = _write_outputs(tmp_path, skipped_finetune=True)
    metrics = json.loads(outputs.metrics_json.read_text())
    metrics["untrained"] = {"adaptor_unsupervised": "svd_rotation"}
    outputs.metrics_json.write_text(json.dumps(metrics))
    model_name = f"kept-start-{uuid.uuid4().hex[:8]}"
    called: list[str | None] = []
    outcome = register_pipeline_run(
        run, outputs, model_name, {"dvc_lock_digest": "ab" * 32}, before_register=called.append
    )
    assert outcome["version"] is None and outcome["new"] is False
    assert "kept its start (svd_rotation)" in outcome["skipped"]
    assert called == []  # nothing about to be registered
    assert run.client.search_model_versions(f"name = '{model_name}'") == []
    assert "svd_rotation" in run.client.get_run(run.run_id).data.tags["registry.skipped"]
