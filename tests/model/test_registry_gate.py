"""Registry tests: the pyfunc model, registration, the promotion gate, dry run, rollback,
the review report and the CLI, against a real SQLite MLflow store (one per module)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.registry import (
    BASELINES,
    LOCK_DIGEST,
    TRAINED_DIMS,
    Planted,
    evaluation_document,
    finished_run,
    mlflow_store,
    planted,
    train_variants,
    write_planted_project,
)
from helpers.stages import assert_cli_failure

from components.adaptor import load_adaptor
from components.registry import (
    CHALLENGER,
    CHAMPION,
    RegistryConfig,
    decide,
    load_champion,
    promote,
    register_run_model,
    rollback,
)
from components.registry.cli import add_registry_commands
from components.registry.description import DESCRIPTION_BUDGET
from components.registry.report import format_bytes, storage_per_million

LENIENT = RegistryConfig(min_delta_vs_baselines=-1.0)  # seeds a champion whatever it scores
STRICT = RegistryConfig()

# ---------------------------------------------------------------- pure gate decisions


def test_gate_passes_only_when_every_counted_size_passes() -> None:
    baselines = {"base": {64: 0.50, 128: 0.60}, "pca": {64: 0.55, 128: 0.58}}
    good = decide(
        {64: 0.62, 128: 0.66}, baselines, STRICT, champion={64: 0.60, 128: 0.65}, champion_version=2
    )
    assert good.passed and good.dims == [64, 128]
    worse = decide(
        {64: 0.62, 128: 0.63}, baselines, STRICT, champion={64: 0.60, 128: 0.65}, champion_version=2
    )
    assert not worse.passed
    assert worse.failures == [
        "m=128: ndcg_at_10 0.6300 is 0.0200 below the champion (v2, "
        "0.6500); required change >= +0.0000"
    ]
    assert "FAILED" in worse.summary() and "m=128" in worse.summary()


def test_gate_thresholds_floor_min_change_and_counted_dims() -> None:
    config = RegistryConfig(ndcg_floor={64: 0.7}, min_delta_vs_champion=0.01, dims=(128,))
    decision = decide({64: 0.5, 128: 0.665}, {"base": {128: 0.6}}, config, champion={128: 0.66})
    assert decision.dims == [128]  # m=64 does not count, so its floor is not checked
    assert decision.failures == [
        "m=128: ndcg_at_10 0.6650 is only 0.0050 above the champion "
        "(0.6600); required change >= +0.0100"
    ]
    floor = decide({64: 0.5}, {}, RegistryConfig(ndcg_floor=0.6))
    assert floor.failures == ["m=64: ndcg_at_10 0.5000 is 0.1000 below the floor 0.6000"]
    tolerant = decide(
        {64: 0.695}, {}, RegistryConfig(min_delta_vs_champion=-0.01), champion={64: 0.70}
    )
    assert tolerant.passed


def test_first_version_must_beat_the_best_baseline_and_missing_sizes_fail() -> None:
    baselines = {"base": {64: 0.5}, "pca": {64: 0.61}}
    first = decide({64: 0.60}, baselines, STRICT)
    assert not first.has_champion and not first.passed
    assert "below the best baseline pca (0.6100)" in first.failures[0]
    assert decide({64: 0.62}, baselines, STRICT).passed
    missing = decide({64: 0.7}, baselines, STRICT, dims=[64, 128])
    assert missing.failures == ["m=128: the challenger has no ndcg_at_10 value"]
    assert not decide({}, {}, STRICT).passed  # nothing to compare is never a pass


def test_storage_per_million_vectors() -> None:
    assert storage_per_million(64) == 256_000_000
    assert format_bytes(storage_per_million(384)) == "1.54 GB"
    assert format_bytes(storage_per_million(16)) == "64 MB"


# ---------------------------------------------------------------- against a real store


@pytest.fixture(scope="module")
def data() -> Planted:
    return planted()


@pytest.fixture(scope="module")
def adaptors(data: Planted, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return train_variants(data, tmp_path_factory.mktemp("adaptors"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_store(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


@pytest.fixture(scope="module")
def documents(data: Planted, adaptors: dict[str, Path]) -> dict[str, dict]:
    return {name: evaluation_document(data, path) for name, path in adaptors.items()}


def register(
    store: str, adaptors: dict[str, Path], documents: dict[str, dict], name: str, variant: str
) -> str:
    run_id = finished_run(store, variant)
    version = register_run_model(
        run_id,
        adaptors[variant],
        documents[variant],
        {"git_commit": "0123abc", "dvc_lock_digest": LOCK_DIGEST},
        model_name=name,
    )
    return str(version.version)


def description_rows(text: str) -> dict[int, list[str]]:
    """``m → cells`` of the per-dimension table in a version description."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0].strip("*").isdigit():
            rows[int(cells[0].strip("*"))] = cells
    return rows


def client(store: str):  # noqa: ANN201
    import mlflow

    return mlflow.MlflowClient(tracking_uri=store)


def test_planted_variants_are_ordered(documents: dict[str, dict]) -> None:
    """The scenario the gate tests rely on: good > medium > shuffled at every size."""
    ndcg = {
        name: {int(m): v["ndcg_at_10"] for m, v in doc["metrics"]["adaptor_supervised"].items()}
        for name, doc in documents.items()
    }
    best_baseline = {
        int(m): max(documents["good"]["metrics"][b][m]["ndcg_at_10"] for b in BASELINES)
        for m in documents["good"]["metrics"]["base"]
    }
    for m in TRAINED_DIMS:
        assert ndcg["good"][m] > ndcg["medium"][m] > ndcg["shuffled"][m]
        assert ndcg["good"][m] > best_baseline[m] > ndcg["shuffled"][m]


def test_registered_version_is_a_pending_challenger_with_metadata(
    store: str, adaptors: dict[str, Path], documents: dict[str, dict], data: Planted
) -> None:
    version = register(store, adaptors, documents, "reg", "good")
    mv = client(store).get_model_version("reg", version)
    assert mv.tags["validation_status"] == "pending"
    assert mv.aliases == [CHALLENGER]
    assert mv.tags["trained_dims"] == "4,8,16" and mv.tags["git_commit"] == "0123abc"
    assert mv.tags["provider"] == "synthetic"
    assert mv.tags["review_report"].endswith(f"review/version-{version}/report.html")
    # Lineage: four searchable tags, the dozen DVC hashes in the run's lineage document.
    described = {"validation_status", "provider", "base_model", "d", "recommended_dim"}
    described |= {"adaptor_method", "trained_dims", "review_report"}
    assert set(mv.tags) - described == {
        "git_commit",
        "dataset_fingerprint",
        "dvc_lock_digest",
        "lineage",
    }
    assert mv.tags["dvc_lock_digest"] == LOCK_DIGEST
    assert mv.tags["lineage"] == f"runs:/{mv.run_id}/lineage/lineage.json"
    import mlflow

    lineage = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(artifact_uri=mv.tags["lineage"], tracking_uri=store)
        ).read_text()
    )
    assert lineage["dvc_lock"]["sha256"] == LOCK_DIGEST
    assert lineage["dvc_lock"]["stages"]["finetune"]["outs"] == {
        "runs/finetune": "finetune-out-md5.dir"
    }
    # The description: not yet gated, the recommendation, one table row per trained m.
    text = mv.description
    assert text.startswith(f"**reg v{version}**: Not yet gated") and text.endswith("\n")
    assert "**Recommended configuration:** `dim=" in text
    assert len(text) <= DESCRIPTION_BUDGET
    rows = description_rows(text)
    assert sorted(rows) == list(TRAINED_DIMS)
    assert rows[4][-2:] == ["16 B", "16 MB"]  # bytes per vector and per million, m=4

    root = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=client(store).get_model_version_download_uri("reg", version),
            tracking_uri=store,
        )
    )
    metadata = json.loads((root / "artifacts" / "metadata.json").read_text())
    assert metadata["d"] == 16 and metadata["trained_dims"] == [4, 8, 16]
    assert set(metadata["ndcg_at_10"]) == {*BASELINES, "adaptor_supervised"}
    assert metadata["recommended_dim"] in TRAINED_DIMS
    assert metadata["dataset_fingerprint"] == "planted-0"
    assert sorted(p.name for p in (root / "review").iterdir()) == [
        "ndcg_vs_dim.png",
        "report.html",
        "report.md",
    ]
    report = (root / "review" / "report.md").read_text()
    assert "storage / 1M vectors" in report and "64 MB" in report
    assert sorted(p.name for p in (root / "code" / "components").iterdir()) == [
        "__init__.py",
        "adaptor.py",
        "config.py",
    ]
    # Loading the registered pyfunc equals the in-process adaptor, at every trained size.
    model = load_champion("reg", alias=CHALLENGER, tracking_uri=store)
    adaptor, _ = load_adaptor(adaptors["good"])
    x = data.queries.numpy()
    for m in TRAINED_DIMS:
        np.testing.assert_allclose(
            model.predict(x, params={"dim": m}), adaptor.embed(x, m).numpy(), atol=1e-6
        )
    with pytest.raises(Exception, match=r"invalid dim 5: .*\[4, 8, 16\]"):
        model.predict(x, params={"dim": 5})


def test_loading_the_model_needs_no_prefect_dvc_or_great_expectations(
    store: str, adaptors: dict[str, Path], documents: dict[str, dict]
) -> None:
    version = register(store, adaptors, documents, "light", "medium")
    script = (
        "import sys, mlflow, numpy as np\n"
        f"m = mlflow.pyfunc.load_model('models:/light/{version}')\n"
        "m.predict(np.ones((2, 16), dtype=np.float32), params={'dim': 8})\n"
        "heavy = sorted({n.split('.')[0] for n in sys.modules} & "
        "{'prefect', 'dvc', 'great_expectations', 'sentence_transformers'})\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
        env={**__import__("os").environ},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "HEAVY []" in done.stdout


def test_better_challenger_is_promoted_and_worse_one_rejected(
    store: str, adaptors: dict[str, Path], documents: dict[str, dict], data: Planted
) -> None:
    c = client(store)
    medium = register(store, adaptors, documents, "gate", "medium")
    seeded = promote("gate", data.evaluation_set(), LENIENT)
    assert seeded.action == "promoted" and seeded.champion_after == medium
    assert c.get_model_version("gate", medium).tags["previous_champion"] == "none"

    good = register(store, adaptors, documents, "gate", "good")
    outcome = promote("gate", data.evaluation_set(), STRICT)
    assert outcome.action == "promoted" and outcome.exit_code == 0
    assert alias(c, "gate", CHAMPION) == good
    tags = c.get_model_version("gate", good).tags
    assert tags["validation_status"] == "passed" and tags["previous_champion"] == medium
    assert tags["promoted_at"]
    assert outcome.decision is not None and outcome.decision.dims == list(TRAINED_DIMS)
    assert all(check.champion is not None for check in outcome.decision.checks)
    promoted = c.get_model_version("gate", good).description
    assert promoted.startswith(f"**gate v{good}**: Promotion gate PASSED")
    assert "Promoted to `@champion` at " in promoted
    assert f"(previous champion: v{medium})" in promoted
    assert f"champion v{medium}" in promoted  # the re-evaluated champion column
    rows = description_rows(promoted)
    assert sorted(rows) == list(TRAINED_DIMS) and all(r[-1] == "pass" for r in rows.values())

    worse = register(store, adaptors, documents, "gate", "shuffled")
    rejected = promote("gate", data.evaluation_set(), STRICT)
    assert rejected.action == "rejected" and rejected.exit_code == 1
    assert alias(c, "gate", CHAMPION) == good  # untouched
    failed = c.get_model_version("gate", worse)
    assert failed.tags["validation_status"] == "failed"
    assert "previous_champion" not in failed.tags
    assert f"below the champion (v{good}" in failed.description
    assert "m=4: ndcg_at_10" in failed.description
    assert "Not promoted: `validation_status=failed`" in failed.description
    assert {r[-1] for r in description_rows(failed.description).values()} == {"FAIL"}
    assert len(failed.description) <= DESCRIPTION_BUDGET
    refusal = rf"failed the promotion gate \(gate v{worse}: Promotion gate FAILED"
    with pytest.raises(ValueError, match=refusal) as e:
        rollback("gate", int(worse))  # the refusal quotes the verdict line, not the table
    assert "\n" not in str(e.value) and "|" not in str(e.value)
    # the champion in the gate was re-evaluated on the same set, not read from its run
    logged = documents["good"]["metrics"]["adaptor_supervised"]["4"]["ndcg_at_10"]
    assert rejected.decision.checks[0].champion == pytest.approx(logged, abs=1e-6)


def test_first_version_is_promoted_only_if_it_beats_the_baselines(
    store: str, adaptors: dict[str, Path], documents: dict[str, dict], data: Planted
) -> None:
    c = client(store)
    shuffled = register(store, adaptors, documents, "first", "shuffled")
    outcome = promote("first", data.evaluation_set(), STRICT)
    assert outcome.action == "rejected" and outcome.champion_after is None
    assert "below the best baseline" in c.get_model_version("first", shuffled).description
    assert c.get_registered_model("first").aliases == {CHALLENGER: int(shuffled)}
    good = register(store, adaptors, documents, "first", "good")
    assert promote("first", data.evaluation_set(), STRICT).action == "promoted"
    assert alias(c, "first", CHAMPION) == good


def test_dry_run_logs_but_never_moves_an_alias(
    store: str, adaptors: dict[str, Path], documents: dict[str, dict], data: Planted, tmp_path: Path
) -> None:
    c = client(store)
    medium = register(store, adaptors, documents, "dry", "medium")
    promote("dry", data.evaluation_set(), LENIENT)
    good = register(store, adaptors, documents, "dry", "good")
    outcome = promote(
        "dry",
        data.evaluation_set(),
        RegistryConfig(run_mode="dry_run"),
        report_dir=tmp_path / "report",
    )
    assert outcome.action == "dry_run" and outcome.decision.passed
    assert alias(c, "dry", CHAMPION) == medium
    assert alias(c, "dry", CHALLENGER) == good
    tags = c.get_model_version("dry", good).tags
    assert tags["validation_status"] == "pending" and tags["gate_dry_run"] == "passed"
    assert "promoted_at" not in tags
    path = c.download_artifacts(
        c.get_model_version("dry", good).run_id, f"review/version-{good}/gate.json", str(tmp_path)
    )
    gate = json.loads(Path(path).read_text())
    assert gate["passed"] is True and gate["run_mode"] == "dry_run"
    logged = c.get_run(c.get_model_version("dry", good).run_id).data.metrics
    assert logged["gate_challenger/ndcg_at_10/dim_4"] == outcome.decision.checks[0].challenger
    assert "gate_champion/ndcg_at_10/dim_16" in logged and "gate_pca/ndcg_at_10/dim_8" in logged
    html = (tmp_path / "report" / "report.html").read_text()
    assert "data:image/png;base64," in html and f"champion v{medium}" in html
    disabled = promote("dry", data.evaluation_set(), RegistryConfig(run_mode="disabled"))
    assert disabled.action == "disabled"
    assert alias(c, "dry", CHAMPION) == medium


def test_rollback_restores_the_previous_champion(
    store: str, adaptors: dict[str, Path], documents: dict[str, dict], data: Planted
) -> None:
    c = client(store)
    medium = register(store, adaptors, documents, "rb", "medium")
    promote("rb", data.evaluation_set(), LENIENT)
    good = register(store, adaptors, documents, "rb", "good")
    assert promote("rb", data.evaluation_set(), STRICT).champion_after == good
    outcome = rollback("rb", int(medium))
    assert outcome.action == "rolled_back" and outcome.champion_before == good
    assert alias(c, "rb", CHAMPION) == medium
    tags = c.get_model_version("rb", medium).tags
    assert tags["previous_champion"] == good
    assert tags["promotion_reason"] == f"rollback from v{good}"
    assert "rolled_back_at" in c.get_model_version("rb", good).tags
    with pytest.raises(LookupError, match="no version 99"):
        rollback("rb", 99)


def alias(c, name: str, which: str) -> str:  # noqa: ANN001
    return str(c.get_model_version_by_alias(name, which).version)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_registry_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_promote_review_report_and_rollback(
    store: str,
    adaptors: dict[str, Path],
    documents: dict[str, dict],
    data: Planted,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    params = write_planted_project(
        data,
        tmp_path,
        {"model_name": "clitest", "run_mode": "enabled", "min_delta_vs_baselines": -1.0},
    )
    common = ["--params", str(params), "--tracking-uri", store]
    medium = register(store, adaptors, documents, "clitest", "medium")
    assert _cli(["promote", *common, "--report-dir", str(tmp_path / "r1")]) == 0
    assert '"action": "promoted"' in capsys.readouterr().out
    good = register(store, adaptors, documents, "clitest", "good")
    assert _cli(["promote", *common, "--run-mode", "dry_run"]) == 0
    assert alias(client(store), "clitest", CHAMPION) == medium
    assert (
        _cli(["review-report", *common, "--version", good, "--out", str(tmp_path / "review")]) == 0
    )
    review = (tmp_path / "review" / "report.md").read_text()
    assert f"champion v{medium}" in review and "Re-evaluated on dataset/test" in review
    assert _cli(["promote", *common]) == 0
    assert alias(client(store), "clitest", CHAMPION) == good
    assert _cli(["rollback", *common, "--version", medium]) == 0
    assert alias(client(store), "clitest", CHAMPION) == medium
    code = _cli(["rollback", *common, "--version", "42"])
    assert_cli_failure(code, capsys.readouterr().err, 2, "rollback: ", "no version 42")
