"""Unit tests of components.tracking that need no MLflow store: names, params, lineage."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest

from components.tracking import (
    collect_lineage,
    dvc_lock_digest,
    evaluation_metrics,
    flatten_params,
    format_dim_table,
    git_info,
    is_secret_key,
    metric_key,
    parse_metric_key,
    read_dvc_lock,
    recommended_dim_key,
    resolve_tracking_uri,
    train_metric_key,
    training_metrics,
    ui_command,
)
from components.tracking.store import artifact_root_for, default_tracking_uri, mlflow_settings

REPORT = {
    "metrics": {
        "base": {
            "64": {"ndcg_at_10": 0.5, "recall_at_100": 0.8, "mrr_at_10": 0.45},
            "384": {"ndcg_at_10": 0.6, "recall_at_100": 0.9, "mrr_at_10": 0.55},
        },
        "adaptor_supervised": {
            "64": {"ndcg_at_10": 0.62, "recall_at_100": float("nan"), "mrr_at_10": 0.5},
            "384": {"ndcg_at_10": 0.66, "recall_at_100": 0.93, "mrr_at_10": 0.6},
        },
    },
    "recommended_dim": {"base": 384, "adaptor_supervised": 64, "pca": None},
    "base_full_ndcg": 0.6,
}


def test_metric_names_follow_one_scheme() -> None:
    assert (
        metric_key("adaptor_supervised", "ndcg_at_10", 64) == "adaptor_supervised/ndcg_at_10/dim_64"
    )
    assert metric_key("base", "recall_at_100", "384") == "base/recall_at_100/dim_384"
    assert recommended_dim_key("pca") == "recommended_dim/pca"
    assert train_metric_key("pretrain", "loss") == "train/pretrain/loss"
    assert parse_metric_key("adaptor_supervised/ndcg_at_10/dim_64") == (
        "adaptor_supervised",
        "ndcg_at_10",
        64,
    )
    with pytest.raises(ValueError, match="per-dimension"):
        parse_metric_key("train/pretrain/loss")
    # Characters MLflow rejects are replaced, never passed through.
    assert metric_key("svd+rot", "ndcg@10", 8) == "svd_rot/ndcg_10/dim_8"


def test_evaluation_metrics_flattens_every_method_and_dim() -> None:
    metrics = evaluation_metrics(REPORT)
    assert metrics["base/ndcg_at_10/dim_64"] == 0.5
    assert metrics["adaptor_supervised/mrr_at_10/dim_384"] == 0.6
    assert "adaptor_supervised/recall_at_100/dim_64" not in metrics  # NaN is not logged
    assert metrics["recommended_dim/adaptor_supervised"] == 64.0
    assert "recommended_dim/pca" not in metrics  # never reached: no fake value
    assert len([k for k in metrics if "/dim_" in k]) == 11


def test_training_metrics_are_step_points() -> None:
    history = {
        "stage": "unsupervised",
        "best_iteration": 20,
        "best_score": 0.7,
        "score_name": "neighbour_ndcg_at_10",
        "iterations": 30,
        "seconds": 1.5,
        "history": [
            {"step": 1, "loss": 2.0, "topk": 1.0, "pairwise": 0.5, "reconstruction": 0.5},
            {
                "step": 2,
                "loss": 1.5,
                "topk": 0.8,
                "pairwise": 0.4,
                "reconstruction": 0.3,
                "ranking": float("inf"),
            },
        ],
        "evaluations": [{"step": 10, "score": 0.6}, {"step": 20, "score": 0.7}],
    }
    points = list(training_metrics("pretrain", history))
    assert ("train/pretrain/loss", 2.0, 1) in points
    assert ("train/pretrain/reconstruction", 0.3, 2) in points
    assert not any(k == "train/pretrain/ranking" for k, _, _ in points)  # inf skipped
    assert ("train/pretrain/neighbour_ndcg_at_10", 0.7, 20) in points
    assert ("train/pretrain/best_iteration", 20.0, 0) in points
    assert all(math.isfinite(v) for _, v, _ in points)
    # A nested summary works the same.
    nested = {
        "summary": {"score_name": "heldout_ndcg_at_10", "best_score": 0.5},
        "history": [],
        "evaluations": [{"step": 5, "score": 0.5}],
    }
    assert ("train/finetune/heldout_ndcg_at_10", 0.5, 5) in list(
        training_metrics("finetune", nested)
    )


def test_long_curves_are_strided_with_the_last_step_kept() -> None:
    history = {
        "history": [{"step": s, "loss": float(s)} for s in range(1, 5001)],
        "evaluations": [{"step": s, "score": 0.5} for s in range(0, 5001, 50)],
    }
    points = list(training_metrics("pretrain", history, max_points=500))
    loss = [step for key, _, step in points if key == "train/pretrain/loss"]
    assert len(loss) == 500 and loss[0] == 10 and loss[-1] == 5000
    assert len([k for k, _, _ in points if k == "train/pretrain/heldout_score"]) == 101
    odd = {"history": [{"step": s, "loss": 1.0} for s in range(1, 1002)]}
    steps = [step for _, _, step in training_metrics("x", odd, max_points=500)]
    assert steps[-1] == 1001 and len(steps) <= 501


def test_flatten_params_dotted_json_values_and_no_secrets() -> None:
    params = {
        "method": {
            "train": {"seed": 0, "unsupervised": {"learning_rate": 0.001}},
            "loss": {"prefix_dims": [16, 32], "prefix_weights": None},
        },
        "embedding": {
            "provider": "openai",
            "api_key_env": "OPENAI_API_KEY",
            "api_key": "sk-secret",
            "base_url": "https://u:p@host/v1",
        },
        "validation": {"build_data_docs": True},
        "empty": {},
    }
    flat = flatten_params(params)
    assert flat["method.train.seed"] == "0"
    assert flat["method.train.unsupervised.learning_rate"] == "0.001"
    assert flat["method.loss.prefix_dims"] == "[16, 32]"
    assert flat["method.loss.prefix_weights"] == "null"
    assert flat["validation.build_data_docs"] == "true"
    assert flat["embedding.api_key_env"] == "OPENAI_API_KEY"  # a variable name, kept
    assert flat["embedding.api_key"] == "<redacted>"
    assert "p@" not in flat["embedding.base_url"] and "host/v1" in flat["embedding.base_url"]
    assert flat["empty"] == "{}"
    assert is_secret_key("x.token") and not is_secret_key("x.api_key_env")


DVC_LOCK = """\
schema: '2.0'
stages:
  validate:
    cmd: matryoshka validate
    deps:
    - path: data/scifact
      hash: md5
      md5: 0123456789abcdef0123456789abcdef.dir
      size: 100
      nfiles: 4
    params:
      params.yaml:
        validation.sample_rows: 5
    outs:
    - path: runs/validation
      hash: md5
      md5: fedcba9876543210fedcba9876543210.dir
  evaluate:
    cmd: matryoshka evaluate
    outs:
    - path: runs/evaluation/metrics.json
      hash: md5
      md5: 11111111111111111111111111111111
"""


def test_dvc_lock_hashes_go_into_one_lineage_document(tmp_path: Path) -> None:
    import hashlib
    import json

    lock = tmp_path / "dvc.lock"
    lock.write_text(DVC_LOCK)
    parsed = read_dvc_lock(lock)
    assert parsed["validate"]["deps"] == {"data/scifact": "0123456789abcdef0123456789abcdef.dir"}
    digest = hashlib.sha256(DVC_LOCK.encode()).hexdigest()  # what `sha256sum dvc.lock` prints
    assert dvc_lock_digest(lock) == digest
    lineage = collect_lineage(tmp_path, dataset_fingerprint="f" * 64)
    # A handful of tags, whatever the number of stages; the hashes live in the document.
    assert lineage.tags() == {"git_commit": "unknown", "dvc_lock_digest": digest}
    document = json.loads(lineage.to_json())
    assert document["dataset_fingerprint"] == "f" * 64
    assert document["dvc_lock"]["sha256"] == digest
    assert document["dvc_lock"]["stages"] == parsed
    assert document["dvc_lock"]["stages"]["evaluate"]["outs"] == {
        "runs/evaluation/metrics.json": "1" * 32
    }
    assert read_dvc_lock(tmp_path / "missing.lock") == {}
    assert dvc_lock_digest(tmp_path / "missing.lock") is None
    assert collect_lineage(tmp_path / "nowhere").tags() == {"git_commit": "unknown"}
    (tmp_path / "bad.lock").write_text("- a list\n")
    with pytest.raises(ValueError, match="bad.lock"):
        read_dvc_lock(tmp_path / "bad.lock")


def test_lineage_masks_credentials_in_dvc_paths(tmp_path: Path) -> None:
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        "schema: '2.0'\nstages:\n  fetch:\n    deps:\n"
        "    - path: https://user:hunter2@example.org/corpus.jsonl\n      etag: abc\n"
    )
    text = collect_lineage(tmp_path).to_json()
    assert "hunter2" not in text and "https://***@example.org/corpus.jsonl" in text


def test_git_info(tmp_path: Path) -> None:
    assert git_info(tmp_path).commit is None
    assert git_info(tmp_path).tags() == {"git_commit": "unknown"}
    repo = tmp_path / "repo"
    repo.mkdir()
    env_git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "f.txt").write_text("a")
    subprocess.run([*env_git, "add", "f.txt"], check=True)
    subprocess.run([*env_git, "commit", "-qm", "init"], check=True)
    info = git_info(repo)
    assert info.commit is not None and len(info.commit) == 40 and info.dirty is False
    (repo / "f.txt").write_text("b")
    assert git_info(repo).dirty is True
    assert git_info(repo).tags()["git_dirty"] == "true"


def test_tracking_uri_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = default_tracking_uri(tmp_path)
    assert default == f"sqlite:///{tmp_path.resolve()}/mlflow/mlflow.db"
    assert resolve_tracking_uri(tmp_path) == default
    assert resolve_tracking_uri(tmp_path, "sqlite:///x.db") == "sqlite:///x.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri(tmp_path, "sqlite:///x.db") == "http://127.0.0.1:5000"
    assert artifact_root_for(default) == tmp_path.resolve() / "mlflow" / "artifacts"
    assert artifact_root_for("http://127.0.0.1:5000") is None
    assert ui_command(default).startswith(
        f"mlflow ui --backend-store-uri {default} --host 127.0.0.1"
    )
    settings = mlflow_settings({"mlflow": {"experiment_name": "x", "tracking_uri": None}})
    assert settings["experiment_name"] == "x" and settings["tracking_uri"] is None


def test_format_dim_table() -> None:
    table = format_dim_table(REPORT)
    lines = table.splitlines()
    assert "| method | m=64 | m=384 | recommended m |" in lines
    assert "| base | 0.5000 | 0.6000 | 384 |" in lines
    assert "| adaptor_supervised | 0.6200 | 0.6600 | 64 |" in lines
