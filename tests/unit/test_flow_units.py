"""Flow helpers without Prefect runs: the stage graph from dvc.yaml, overrides, reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers.stages import REPO

from components.stages.graph import StageGraphError, StageSpec, load_stage_graph
from pipelines.retraining import (
    RetrainingResult,
    _log_line,
    _skip_reason,
    _stage_exit_code,
    _stage_report,
    effective_overrides,
)


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


def test_effective_overrides_add_the_shortcuts() -> None:
    changes = effective_overrides("data/tiny", "openai", {"method.train.seed": 3})
    assert changes == {
        "method.train.seed": 3,
        "dataset.path": "data/tiny",
        "embedding.provider": "openai",
    }
    assert effective_overrides(None, None, None) == {}


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


def test_stage_exit_code_and_forwarded_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    lines = [
        "Running stage 'pretrain':",
        "ERROR: failed to reproduce 'pretrain': failed to run: matryoshka pretrain, exited with 1",
    ]
    assert _stage_exit_code(lines, 255) == 1  # DVC exits 255; the command exited 1
    assert _stage_exit_code(["no marker"], 255) == 255
    import logging

    logger = logging.getLogger("test.forward")
    with caplog.at_level(logging.INFO, logger="test.forward"):
        _log_line(logger, "2026-12-01 20:48:43,167 WARNING components.stages: low disk")
        _log_line(logger, "plain line")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "low disk"),
        ("INFO", "plain line"),
    ]


def test_result_text_says_where_the_outputs_are() -> None:
    result = RetrainingResult(
        run="20261201-000000-abcdef",
        run_id="r1",
        experiment_id="1",
        tracking_uri="sqlite:///x.db",
        stages={"validate": "cached"},
        table="| t |",
        ui="MLflow UI: mlflow ui ...",
        workspace="/p/.matryoshka/runs/20261201-000000-abcdef/workspace",
        registered={"model_name": "m", "version": "2", "new": False},
    )
    text = str(result)
    assert "| t |" in text and "validate cached" in text and "version 2" in text
    assert "matryoshka apply 20261201-000000-abcdef" in text


def test_result_text_reports_the_gate_outcome() -> None:
    base = {
        "run": "20261201-000000-abcdef",
        "run_id": "r1",
        "experiment_id": "1",
        "tracking_uri": "sqlite:///x.db",
        "stages": {"evaluate": "ran"},
        "table": "| t |",
        "ui": "MLflow UI",
        "workspace": "/p/w",
        "registered": {"model_name": "m", "version": "3", "new": True},
    }
    promoted = RetrainingResult(
        **base,
        gate={
            "action": "promoted",
            "version": "3",
            "champion_before": "2",
            "champion_after": "3",
            "message": "Promotion gate PASSED at m=[64].",
        },
    )
    assert "gate: v3 promoted: @champion v2 → v3. Promotion gate PASSED at m=[64]." in str(promoted)
    timed_out = RetrainingResult(
        **base, gate={"action": "timed_out", "version": "3", "champion_before": None}
    )
    assert "gate: v3 timed out waiting for approval: stays @challenger" in str(timed_out)
    assert "gate:" not in str(RetrainingResult(**base))


def test_progress_lines_are_parsed_from_stage_output() -> None:
    from components.embedding.progress import Progress, parse_progress_line

    progress = Progress(total=40, desc="corpus", mode="off")
    progress.update(10)
    # the stage's log format, as run_dvc_stage receives it
    line = f"2026-12-01 00:00:00,000 INFO components.embedding.progress: {progress.line()}"
    point = parse_progress_line(line)
    assert point is not None and (point.desc, point.done, point.total) == ("corpus", 10, 40)
    assert parse_progress_line("queries: 16/16 texts (100%), 9.0 texts/s, ETA 0m00s") == (
        "queries",
        16,
        16,
    )
    assert parse_progress_line("corpus: 40 texts, 0 cached, 40 to embed") is None


def test_flow_summary_rows_links_and_report() -> None:
    from components.tracking.flow_summary import (
        metric_rows,
        mlflow_links,
        run_report_markdown,
    )

    report = {
        "metrics": {
            "base": {"16": {"ndcg_at_10": 0.512345}, "4": {"ndcg_at_10": 0.3}},
            "pca": {"4": {"ndcg_at_10": 0.31}},
        }
    }
    assert metric_rows(report) == [
        {"method": "base", "dim": 4, "ndcg_at_10": 0.3},
        {"method": "base", "dim": 16, "ndcg_at_10": 0.5123},
        {"method": "pca", "dim": 4, "ndcg_at_10": 0.31},
    ]
    served = mlflow_links("http://mlflow.internal:5000/", "7", "abc", "m", "3")
    assert served == {
        "run": "http://mlflow.internal:5000/#/experiments/7/runs/abc",
        "version": "http://mlflow.internal:5000/#/models/m/versions/3",
    }
    assert "version" not in mlflow_links("sqlite:///x.db", "7", "abc")
    text = run_report_markdown(
        run="r",
        table="| m | base |",
        links=served,
        stages={"embed": "cached"},
        verdict="v3 promoted",
        gate="### m v3: gate PASSED",
        registered={"model_name": "m", "version": "3", "new": True},
    )
    assert (
        text.index("**v3 promoted**")
        < text.index("### m v3: gate PASSED")
        < text.index("| m | base |")
    )
    assert "[m v3](http://mlflow.internal:5000/#/models/m/versions/3)" in text
    assert "Stages: embed cached" in text


def test_the_embed_stage_is_retried_only_for_transient_provider_failures() -> None:
    from prefect.states import Failed

    from components.cli import EXIT_TEMPFAIL
    from pipelines.retraining import EMBED_STAGE, STAGE_TASK_OPTIONS, StageFailedError

    retry = STAGE_TASK_OPTIONS[EMBED_STAGE]["retry_condition_fn"]

    def failed(exit_code: int) -> object:
        return Failed(data=StageFailedError(EMBED_STAGE, "stage 'embed' failed", exit_code))

    assert retry(None, None, failed(EXIT_TEMPFAIL))  # the provider kept failing: try later
    assert not retry(None, None, failed(1))  # bad vectors / data: the same every time
    assert not retry(None, None, failed(2))  # bad settings
    assert retry(None, None, Failed(data=OSError("worker lost its disk")))  # not the stage's


def test_a_provider_failure_is_transient_unless_its_cause_is_permanent() -> None:
    from components.cli import EXIT_FAILED, EXIT_TEMPFAIL, _failure
    from components.embedding.errors import PermanentError, TransientError
    from components.embedding.retry import RetryPolicy, call_with_retries

    policy = RetryPolicy(max_retries=1, initial_s=0.0, max_s=0.0)
    outcomes = []
    for error in (TransientError("HTTP 503"), PermanentError("HTTP 401")):

        def request(error: Exception = error) -> None:
            raise error

        try:
            call_with_retries(request, policy, provider="p", batch="b", sleep=lambda s: None)
        except Exception as exc:  # noqa: BLE001 - the CLI's mapping is what is tested
            outcomes.append(_failure(exc)[0])
    assert outcomes == [EXIT_TEMPFAIL, EXIT_FAILED]
