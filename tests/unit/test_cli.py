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
from helpers.stages import (
    FAST,
    REPO,
    TINY,
    assert_cli_failure,
    one_thread,  # noqa: F401 - fixture
    subprocess_env,
    synthetic_embeddings,
)

from components import cli
from components.params import parse_override
from components.stages import STAGE_NAMES

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
    assert_cli_failure(int(info.value.code), capsys.readouterr().err, 2, "--set")


def test_invalid_param_value_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        ["pretrain", "--runs-dir", str(tmp_path), "--set", "method.train.unsupervised.batch_size=0"]
    )
    assert_cli_failure(code, capsys.readouterr().err, 2, "method.train.unsupervised.batch_size")
    code = cli.main(["pretrain", "--params", str(tmp_path / "nope.yaml")])
    assert_cli_failure(code, capsys.readouterr().err, 2, "params file not found")


@pytest.mark.usefixtures("one_thread")
def test_stage_commands_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    common = [*fast_args(), "--runs-dir", str(runs)]
    code = cli.main(["pretrain", *common])  # no embeddings yet
    assert_cli_failure(code, capsys.readouterr().err, 1, "run the embed stage first")
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
    code = cli.main(["results", "--runs-dir", str(tmp_path)])
    assert_cli_failure(code, capsys.readouterr().err, 1, "run the evaluate stage first")


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


def test_run_calls_the_flow_with_dataset_provider_overrides(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[dict[str, Any]] = []

    def retraining_flow(
        dataset: str | None = None,
        provider: str | None = None,
        overrides: dict[str, Any] | None = None,
        apply: bool = False,
    ) -> dict[str, Any]:
        calls.append(
            {"dataset": dataset, "provider": provider, "overrides": overrides, "apply": apply}
        )
        return {"status": "ok"}

    fake = types.ModuleType("pipelines.retraining")
    fake.retraining_flow = retraining_flow  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pipelines.retraining", fake)
    code = cli.main(
        ["run", "--dataset", str(TINY), "--provider", "local", "--set", "method.train.seed=7"]
    )
    assert code == 0
    assert calls == [
        {
            "dataset": str(TINY),
            "provider": "local",
            "overrides": {"method.train.seed": 7},
            "apply": False,
        }
    ]
    assert "ok" in capsys.readouterr().out
    code = cli.main(["run", "--params", "other.yaml"])
    assert_cli_failure(code, capsys.readouterr().err, 2, "params file not found: other.yaml")


def test_an_unexpected_error_is_one_line_and_the_traceback_needs_v(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import components.stages as stages

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(stages, "run_stage", broken)
    code = cli.main(["pretrain"])
    err = capsys.readouterr().err
    assert_cli_failure(code, err, 1, "error: RuntimeError: disk on fire", "run with -v")
    assert len(err.strip().splitlines()) == 2
    assert cli.main(["-v", "pretrain"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_a_provider_without_a_model_is_a_message_not_a_pydantic_dump(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["embed", "--provider", "openai", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert_cli_failure(code, err, 2, "embedding: embedding.model is required for provider 'openai'")
    assert "pydantic" not in err and "Value error" not in err


def test_a_truncated_cache_file_is_named_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from components.embedding import EmbeddingConfig
    from components.embedding.extract import open_cache

    cache_dir = tmp_path / "cache"
    config = EmbeddingConfig(
        provider="openai", model="m", base_url="http://127.0.0.1:9/v1", cache_dir=cache_dir
    )
    namespace = open_cache(config, "document").dir
    bad = namespace / "seg-0123456789abcdef0123456789abcdef.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    sets = [
        "embedding.provider=openai",
        "embedding.model=m",
        "embedding.base_url=http://127.0.0.1:9/v1",
        f"embedding.cache_dir={cache_dir}",
    ]
    args = ["embed", "--dataset", str(TINY), "--runs-dir", str(tmp_path / "runs")]
    for item in sets:
        args += ["--set", item]
    code = cli.main(args)
    assert_cli_failure(code, capsys.readouterr().err, 1, str(bad), "unreadable cache file")
