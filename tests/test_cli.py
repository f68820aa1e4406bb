"""The ``matryoshka`` CLI: fast help, --set parsing, exit codes, stage commands, results, run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
from test_stages_support import (
    FAST,
    TINY,
    one_thread,  # noqa: F401 - fixture
    subprocess_env,
    synthetic_embeddings,
)

from components import cli
from components.stages import STAGE_NAMES, parse_override

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "great_expectations", "prefect", "mlflow", "sentence_transformers", "matplotlib")


def fast_args() -> list[str]:
    args: list[str] = ["--params", str(REPO / "params.yaml")]
    for key, value in FAST.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    return args


def test_help_is_fast_and_imports_nothing_heavy() -> None:
    code = (
        "import sys, components.cli as c; c.build_parser().format_help(); "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=subprocess_env(),
        cwd=REPO,
    )
    assert out.stdout.strip() == "[]"
    start = time.perf_counter()
    shown = subprocess.run(
        [str(REPO / ".venv" / "bin" / "matryoshka"), "--help"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=REPO,
    )
    elapsed = time.perf_counter() - start
    assert shown.returncode == 0
    for command in (
        "validate",
        "embed",
        "pretrain",
        "finetune",
        "evaluate",
        "stage",
        "results",
        "run",
    ):
        assert command in shown.stdout
    assert elapsed < 8, f"--help took {elapsed:.1f}s"  # ~1 s; generous on a shared box


@pytest.mark.parametrize(
    "command", ["validate", "embed", "pretrain", "finetune", "evaluate", "stage", "results", "run"]
)
def test_every_command_has_params_and_set(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "--params" in text and "--set KEY=VALUE" in text


def test_stage_names_match_the_stages_package() -> None:
    assert cli.STAGE_NAMES == STAGE_NAMES


@pytest.mark.parametrize(
    "text, expected",
    [
        ("method.train.seed=3", ("method.train.seed", 3)),
        ("evaluation.dims=[16, 32]", ("evaluation.dims", [16, 32])),
        ("method.adaptor.hidden_dim=null", ("method.adaptor.hidden_dim", None)),
        ("method.adaptor.use_rotation=false", ("method.adaptor.use_rotation", False)),
        (
            "method.train.unsupervised.learning_rate=1e-4",
            ("method.train.unsupervised.learning_rate", 1e-4),
        ),
        ("embedding.model=text-embedding-3-small", ("embedding.model", "text-embedding-3-small")),
        ("embedding.base_url=http://h:1/v1", ("embedding.base_url", "http://h:1/v1")),
        ("embedding.model=", ("embedding.model", None)),
    ],
)
def test_set_values_are_yaml_scalars(text: str, expected: tuple[str, Any]) -> None:
    assert parse_override(text) == expected


@pytest.mark.parametrize("bad", ["noequals", "=1", "a..b=1", "a=[1,"])
def test_bad_set_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["pretrain", "--set", bad])
    assert info.value.code == 2
    assert "--set" in capsys.readouterr().err


def test_invalid_param_value_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        ["pretrain", "--runs-dir", str(tmp_path), "--set", "method.train.unsupervised.batch_size=0"]
    )
    assert code == 2
    assert "method.train.unsupervised.batch_size" in capsys.readouterr().err
    assert cli.main(["pretrain", "--params", str(tmp_path / "nope.yaml")]) == 2
    assert "params file not found" in capsys.readouterr().err


@pytest.mark.usefixtures("one_thread")
def test_stage_commands_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    common = [*fast_args(), "--runs-dir", str(runs)]
    assert cli.main(["pretrain", *common]) == 1  # no embeddings yet
    assert "run the embed stage first" in capsys.readouterr().err
    synthetic_embeddings(runs / "embeddings")
    assert cli.main(["pretrain", *common]) == 0
    assert "pretrain: best heldout_neighbour_ndcg=" in capsys.readouterr().out
    assert cli.main(["finetune", *common, "--dataset", str(TINY)]) == 0
    assert cli.main(["stage", "evaluate", *common, "--dataset", str(TINY)]) == 0
    printed = capsys.readouterr().out
    assert "nDCG@10 by dimensions kept (m)" in printed and "adaptor_supervised" in printed
    assert cli.main(["results", "--runs-dir", str(runs)]) == 0
    shown = capsys.readouterr().out
    assert shown.strip() == (runs / "evaluation" / "table.txt").read_text().strip()
    assert "recommended: " in shown


def test_results_without_an_evaluation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["results", "--runs-dir", str(tmp_path)]) == 1
    assert "run the evaluate stage first" in capsys.readouterr().err


def test_results_prints_table_from_metrics_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = {
        "metrics": {
            "base": {"64": {"ndcg_at_10": 0.61}, "384": {"ndcg_at_10": 0.65}},
            "adaptor_supervised": {"64": {"ndcg_at_10": 0.66}, "384": {"ndcg_at_10": 0.70}},
        },
        "recommended_dim": {"base": 384, "adaptor_supervised": 64},
        "base_full_ndcg": 0.65,
        "recommend_fraction": 0.99,
        "queries": 300,
        "dataset": "scifact",
        "test_split": "test",
    }
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(metrics))
    assert cli.main(["results", "--metrics", str(path)]) == 0
    out = capsys.readouterr().out
    assert "[scifact, test split, 300 queries]" in out
    assert "adaptor_supervised" in out and "0.6600" in out
    assert out.strip().endswith("recommended: adaptor_supervised at m=64")


def test_run_without_the_flow_module(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib

    real = importlib.import_module

    def missing(name: str, *args: Any) -> Any:
        if name == "pipelines.retraining":
            raise ModuleNotFoundError("No module named 'pipelines.retraining'", name=name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", missing)
    assert cli.main(["run"]) == 1
    assert "retraining flow is not available" in capsys.readouterr().err


def test_run_calls_the_flow_with_dataset_provider_overrides(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[dict[str, Any]] = []

    def retraining_flow(
        dataset: str | None = None,
        provider: str | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        calls.append({"dataset": dataset, "provider": provider, "overrides": overrides})
        return {"status": "ok"}

    fake = types.ModuleType("pipelines.retraining")
    fake.retraining_flow = retraining_flow  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pipelines.retraining", fake)
    code = cli.main(
        ["run", "--dataset", str(TINY), "--provider", "local", "--set", "method.train.seed=7"]
    )
    assert code == 0
    assert calls == [
        {"dataset": str(TINY), "provider": "local", "overrides": {"method.train.seed": 7}}
    ]
    assert "ok" in capsys.readouterr().out
    assert cli.main(["run", "--params", "other.yaml"]) == 2
