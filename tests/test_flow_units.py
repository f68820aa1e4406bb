"""Flow helpers without Prefect runs: the stage graph from dvc.yaml, overrides, reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipelines.graph import StageGraphError, StageSpec, load_stage_graph
from pipelines.retraining import (
    RetrainingResult,
    _skip_reason,
    _stage_report,
    effective_overrides,
    params_overridden,
    registered_model_name,
)

REPO = Path(__file__).resolve().parents[1]


def test_stage_graph_comes_from_dvc_yaml() -> None:
    stages = load_stage_graph(REPO / "dvc.yaml")
    assert [s.name for s in stages] == ["validate", "embed", "pretrain", "finetune", "evaluate"]
    by_name = {s.name: s for s in stages}
    assert by_name["embed"].upstream == ("validate",)
    assert set(by_name["evaluate"].upstream) >= {"embed", "pretrain", "finetune"}
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert params["dataset"]["path"] in by_name["validate"].deps  # ${dataset.path} resolved
    assert all(s.cmd.startswith("matryoshka ") for s in stages)


def test_stage_graph_order_and_errors(tmp_path: Path) -> None:
    dvc = tmp_path / "dvc.yaml"
    dvc.write_text(
        "stages:\n"
        "  b:\n    cmd: make b\n    deps: [out/a/file.txt]\n    outs: [out/b]\n"
        "  a:\n    cmd: make ${tool}\n    deps: ['${src}']\n    outs: [out/a]\n"
        "  c:\n    cmd: make c\n    outs: [out/c]\n"
    )
    stages = load_stage_graph(dvc, {"src": "data", "tool": "a"})
    assert [s.name for s in stages] == ["a", "b", "c"]  # dependency first, then file order
    assert stages[0].cmd == "make a" and stages[0].deps == ("data",)
    with pytest.raises(StageGraphError, match=r"\$\{src\} is not defined"):
        load_stage_graph(dvc, {"tool": "a"})
    dvc.write_text(
        "stages:\n  a:\n    cmd: x\n    deps: [b]\n    outs: [a]\n"
        "  b:\n    cmd: y\n    deps: [a]\n    outs: [b]\n"
    )
    with pytest.raises(StageGraphError, match="cycle"):
        load_stage_graph(dvc, {})
    with pytest.raises(StageGraphError, match="not found"):
        load_stage_graph(tmp_path / "missing.yaml", {})


def test_overrides_are_written_with_comments_and_undone(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    original = (
        "# top comment\ndataset:\n  path: data/scifact   # the demo\n"
        "method:\n  train:\n    seed: 0\n"
    )
    params.write_text(original)
    changes = effective_overrides(
        "data/tiny", "openai", {"method.train.seed": 3, "mlflow.experiment_name": "x"}
    )
    assert changes["dataset.path"] == "data/tiny"
    assert changes["embedding.provider"] == "openai"
    with params_overridden(params, changes):
        text = params.read_text()
        assert "# top comment" in text and "# the demo" in text
        data = yaml.safe_load(text)
        assert data["dataset"]["path"] == "data/tiny"
        assert data["method"]["train"]["seed"] == 3
        assert data["mlflow"]["experiment_name"] == "x"
    assert params.read_text() == original
    with pytest.raises(RuntimeError), params_overridden(params, changes):
        raise RuntimeError("stage failed")
    assert params.read_text() == original
    assert not list(tmp_path.glob(".params.yaml.*"))
    with params_overridden(params, {}):  # no overrides: the file is not touched
        assert params.read_text() == original


def test_stage_reports_and_skips(tmp_path: Path) -> None:
    validate = StageSpec("validate", "matryoshka validate", outs=("runs/validation",))
    (tmp_path / "runs" / "validation").mkdir(parents=True)
    assert _stage_report(validate, tmp_path, ["a", "", "b"]) == "a\nb"
    (tmp_path / "runs" / "validation" / "summary.txt").write_text(
        "Data validation FAILED\n  corpus.jsonl, row 3, field '_id'\n"
    )
    assert "row 3" in _stage_report(validate, tmp_path, ["noise"])

    finetune = StageSpec("finetune", "matryoshka finetune", outs=("runs/finetune",))
    assert _skip_reason(finetune, tmp_path) is None
    (tmp_path / "runs" / "finetune").mkdir(parents=True)
    (tmp_path / "runs" / "finetune" / "history.json").write_text(
        json.dumps({"skipped": True, "reason": "no training labels (qrels/train.tsv)"})
    )
    assert "no training labels" in _skip_reason(finetune, tmp_path)


def test_registered_model_name_and_result_text() -> None:
    assert registered_model_name({}) == "matryoshka-adaptor"
    assert registered_model_name({"mlflow": {"registered_model_name": "m"}}) == "m"
    assert (
        registered_model_name(
            {"mlflow": {"registered_model_name": "m"}, "registry": {"model_name": "r"}}
        )
        == "r"
    )
    result = RetrainingResult(
        "r1",
        "1",
        "sqlite:///x.db",
        {"validate": "cached"},
        "| t |",
        "MLflow UI: mlflow ui ...",
        {"model_name": "m", "version": "2", "new": False},
    )
    text = str(result)
    assert "| t |" in text and "validate cached" in text and "version 2" in text
