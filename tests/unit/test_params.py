"""One typed root for params.yaml: every section validated at load time, one override rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers.stages import REPO

from components.params import (
    ParamsError,
    PipelineParams,
    apply_overrides,
    load_params,
    overridden_params_text,
    parse_override,
    read_params_file,
)


def test_params_yaml_validates_every_section() -> None:
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, PipelineParams)
    assert params.method.loss.resolve_dims(384)[0] == (16, 32, 64, 128, 256, 384)
    assert params.dataset.test_split == "test"
    assert params.embedding.provider == "local"
    assert params.validation.min_score == 0
    assert params.registry.run_mode == "enabled"
    assert params.mlflow.experiment_name == "matryoshka-adaptor"
    assert set(yaml.safe_load((REPO / "params.yaml").read_text())) == set(
        PipelineParams.model_fields
    )


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("dataset.pth", "dataset.pth: unknown key (did you mean 'path'?)"),
        ("method.train.sed", "method.train.sed: unknown key (did you mean 'seed'?)"),
        ("method.loss.alpah", "method.loss.alpah: unknown key (did you mean 'alpha'?)"),
        ("evaluation.ndcg", "evaluation.ndcg: unknown key (did you mean 'ndcg_k'?)"),
        ("validation.min_scor", "validation.min_scor: unknown key (did you mean 'min_score'?)"),
        ("embedding.providr", "embedding.providr: unknown key (did you mean 'provider'?)"),
        ("registry.run_mod", "registry.run_mod: unknown key (did you mean 'run_mode'?)"),
        ("mlflow.tracking", "mlflow.tracking: unknown key (did you mean 'tracking_uri'?)"),
        ("zzz.x", "zzz: unknown key; known keys here: dataset, method"),
    ],
)
def test_a_typo_in_any_section_fails_at_load_naming_the_key(key: str, message: str) -> None:
    with pytest.raises(ParamsError) as failure:
        load_params(REPO / "params.yaml", {key: 1})
    assert message in str(failure.value)
    assert str(failure.value).startswith(str(REPO / "params.yaml"))


def test_a_typo_in_the_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("method:\n  loss:\n    alpah: 1.0\n")
    with pytest.raises(ParamsError, match=r"params\.yaml: method\.loss\.alpah: unknown key"):
        load_params(path)


def test_bad_values_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="registry.run_mode"):
        load_params(REPO / "params.yaml", {"registry.run_mode": "sometimes"})
    with pytest.raises(ParamsError, match="embedding.model is required for provider 'openai'"):
        load_params(REPO / "params.yaml", {"embedding.provider": "openai"})
    with pytest.raises(ParamsError, match=r"'method\.train' is a value, not a section"):
        load_params(REPO / "params.yaml", {"method.train": 3, "method.train.seed": 1})


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "missing.yaml")
    assert load_params(tmp_path / "missing.yaml", missing_ok=True) == PipelineParams()
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        read_params_file(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ParamsError, match="expected a mapping at the top level"):
        read_params_file(bad)


def test_model_name_falls_back_once() -> None:
    assert PipelineParams().model_name == "matryoshka-adaptor"
    named = load_params(None, {"mlflow.registered_model_name": "m"}, missing_ok=True)
    assert named.model_name == "m"
    both = load_params(
        None, {"mlflow.registered_model_name": "m", "registry.model_name": "r"}, missing_ok=True
    )
    assert both.model_name == "r"


def test_apply_overrides_is_a_deep_copy() -> None:
    raw = {"method": {"train": {"seed": 0}}}
    out = apply_overrides(raw, {"method.train.seed": 3, "mlflow.experiment_name": "e"})
    assert out == {"method": {"train": {"seed": 3}}, "mlflow": {"experiment_name": "e"}}
    assert raw["method"]["train"]["seed"] == 0
    with pytest.raises(ParamsError, match="not a section"):
        apply_overrides(raw, {"method.train.seed.x": 1})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("method.train.seed=3", ("method.train.seed", 3)),
        ("evaluation.dims=[64, 128]", ("evaluation.dims", [64, 128])),
        ("embedding.model=null", ("embedding.model", None)),
        (
            "method.train.supervised.learning_rate=1e-4",
            ("method.train.supervised.learning_rate", 1e-4),
        ),
        ("dataset.path=data/x", ("dataset.path", "data/x")),
    ],
)
def test_parse_override(text: str, expected: tuple) -> None:
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["seed", "=3", "a..b=1", "a.b=[1,"])
def test_parse_override_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_override(text)


def test_overridden_text_keeps_comments_and_changes_only_the_keys() -> None:
    original = (
        "# top comment\ndataset:\n  path: data/scifact   # the demo\n"
        "method:\n  train:\n    seed: 0\n"
    )
    text = overridden_params_text(
        original, {"method.train.seed": 3, "mlflow.experiment_name": "x", "dataset.path": "d"}
    )
    assert "# top comment" in text and "# the demo" in text
    data = yaml.safe_load(text)
    assert data == {
        "dataset": {"path": "d"},
        "method": {"train": {"seed": 3}},
        "mlflow": {"experiment_name": "x"},
    }
    assert overridden_params_text(original, {}) == original


def test_params_yaml_is_read_in_one_module() -> None:
    readers = {
        path.relative_to(REPO).as_posix()
        for folder in ("components", "pipelines")
        for path in (REPO / folder).rglob("*.py")
        if "safe_load(" in path.read_text(encoding="utf-8")
    }
    # The other two parse dvc.yaml (the stage graph) and dvc.lock (lineage), not params.
    assert readers == {
        "components/params.py",
        "components/stages/graph.py",
        "components/tracking/lineage.py",
    }
