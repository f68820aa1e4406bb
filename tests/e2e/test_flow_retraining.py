"""End-to-end: the real Prefect retraining flow on a tiny dataset, tracked in MLflow.

Each test builds a throw-away DVC project (``dvc.yaml`` and ``params.yaml`` of the repo, the
``components`` sources its stages depend on, a tiny dataset). The flow runs its stages in an
isolated workspace and must leave every file of that project as it was. Prefect runs
against its test harness (one temporary API per session); MLflow against one SQLite
database per session.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.stages import BAD, REPO, TINY
from helpers.stages import FAST_FLOW as FAST

import pipelines  # noqa: F401  (project-local Prefect settings before Prefect loads)
from components.runs.record import RunsLayout
from components.stages.evaluate import METHOD_ORDER

STAGES = ["validate", "embed", "pretrain", "finetune", "evaluate"]
METHODS = list(METHOD_ORDER)
DIMS = [16, 32, 64, 128, 256, 384]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """One temporary Prefect API for the session (≈18 s to start on 2 cores)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> str:
    """MLflow in the session's SQLite store; one torch thread per stage process (two
    threads contending on 2 shared cores make tiny trainings ~10x slower)."""
    store = tmp_path_factory.getbasetemp() / "mlflow-store"
    store.mkdir(exist_ok=True)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    return uri


def make_project(root: Path, dataset: Path) -> Path:
    """A DVC project with the repo's pipeline definition and ``dataset`` as data/<name>."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(REPO / name, root / name)
    shutil.copytree(
        REPO / "components", root / "components", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(dataset, root / "data" / dataset.name)
    dvc = Path(sys.executable).parent / "dvc"
    subprocess.run([str(dvc), "init", "--no-scm", "-q"], cwd=root, check=True)
    return root


def project_files(project: Path) -> dict[str, bytes]:
    """Every file a run must leave untouched (the project's snapshot, stage outputs aside)."""
    from components.runs.workspace import snapshot_files

    return {name: (project / name).read_bytes() for name in snapshot_files(project)}


def names() -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {
        "mlflow.experiment_name": f"flow-{tag}",
        "mlflow.registered_model_name": f"adaptor-{tag}",
    }


def test_flow_runs_every_stage_and_tracks_the_run(tmp_path: Path, prefect_api: None) -> None:
    from mlflow.tracking import MlflowClient

    from components.data import load_dataset
    from components.tracking import metric_key, read_run_lineage
    from pipelines.retraining import retraining_flow

    project = make_project(tmp_path / "project", TINY)
    before = project_files(project)
    overrides = {**FAST, **names()}
    result = retraining_flow(
        dataset="data/tiny", provider="local", overrides=overrides, root=str(project)
    )

    assert result.stages == dict.fromkeys(STAGES, "ran")
    assert project_files(project) == before  # the overrides went to the workspace only
    flow_log = (RunsLayout(project).run_dir(result.run) / "flow.log").read_text()
    for phase in ("unsupervised", "supervised"):  # training's progress reached the flow log
        assert f"{phase}: step 0/30, heldout" in flow_log
        assert re.search(rf"{phase}: step 30/30, loss [\d.]+, .* done in ", flow_log)
    for stage in STAGES:
        assert re.search(rf"stage {stage} finished in [\d.]+ s", flow_log)
    assert re.search(r"GX suite corpus: \d+ expectations on \d+ rows of ", flow_log)
    assert re.search(r"GX suite corpus_embeddings: passed in [\d.]+ s", flow_log)
    assert f"evaluating {len(METHODS)} methods at {len(DIMS)} sizes" in flow_log
    assert not (project / "runs").exists() and not (project / "dvc.lock").exists()
    client = MlflowClient(result.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["dataset.path"] == "data/tiny"
    assert params["embedding.provider"] == "local"
    assert params["method.train.unsupervised.max_iterations"] == "30"
    assert params["method.loss.prefix_dims"] == "[16, 32, 64, 128, 256, 384]"
    metrics = run.data.metrics
    for method in METHODS:
        for dim in DIMS:
            for name in ("ndcg_at_10", "recall_at_100", "mrr_at_10"):
                assert 0.0 <= metrics[metric_key(method, name, dim)] <= 1.0
        if method in ("base", "adaptor_unsupervised", "adaptor_supervised"):
            # logged only where a method reaches the target; a baseline may not on TINY
            assert f"recommended_dim/{method}" in metrics
    for stage in ("pretrain", "finetune"):
        curve = client.get_metric_history(result.run_id, f"train/{stage}/loss")
        assert [m.step for m in curve] == list(range(1, 31))
    evaluation = {a.path for a in client.list_artifacts(result.run_id, "evaluation")}
    assert {
        "evaluation/metrics.json",
        "evaluation/metrics.csv",
        "evaluation/ndcg_vs_dim.png",
        "evaluation/table.md",
    } <= evaluation
    gx = {a.path for a in client.list_artifacts(result.run_id, "validation/gx_results")}
    assert "validation/gx_results/corpus.json" in gx
    tags = run.data.tags
    assert len(tags["git_commit"]) == 40
    lock_file = Path(result.workspace) / "dvc.lock"
    lock = lock_file.read_text()
    assert tags["dvc_lock_digest"] == hashlib.sha256(lock_file.read_bytes()).hexdigest()
    assert not [key for key in tags if key.startswith("dvc.")]  # hashes: one JSON artifact
    lineage = read_run_lineage(client, result.run_id)
    stages = lineage["dvc_lock"]["stages"]
    for stage, kind, path in (
        ("validate", "deps", "data/tiny"),
        ("embed", "outs", "runs/embeddings"),
        ("pretrain", "outs", "runs/pretrain"),
        ("finetune", "outs", "runs/finetune"),
        ("evaluate", "outs", "runs/evaluation/metrics.json"),
    ):
        assert stages[stage][kind][path] in lock
    fingerprint = load_dataset(project / "data" / "tiny").fingerprint()
    assert tags["dataset.fingerprint"] == fingerprint == lineage["dataset_fingerprint"]
    version = client.get_model_version(
        result.registered["model_name"], result.registered["version"]
    )
    assert version.tags["dvc_lock_digest"] == tags["dvc_lock_digest"]
    assert version.tags["lineage"] == f"runs:/{result.run_id}/lineage/lineage.json"
    assert "| **" in version.description  # the per-dimension table, recommended m in bold
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == fingerprint[:32]
    assert result.registered is not None and result.registered["new"] is True
    assert "mlflow ui --backend-store-uri" in str(result)
    # params.yaml's registry.run_mode (enabled): the flow gated its own challenger
    assert result.gate is not None and result.gate["action"] in {"promoted", "rejected"}
    assert result.gate["version"] == result.registered["version"]
    assert "gate: v" in str(result)

    # Warm re-run, nothing changed: every stage comes from DVC's cache, no new version.
    started = time.perf_counter()
    again = retraining_flow(
        dataset="data/tiny", provider="local", overrides=overrides, root=str(project)
    )
    warm = time.perf_counter() - started
    assert again.stages == dict.fromkeys(STAGES, "cached")
    assert again.registered == {**result.registered, "new": False}
    assert client.get_run(again.run_id).info.status == "FINISHED"
    assert warm < 60, f"warm re-run took {warm:.1f} s"
    assert project_files(project) == before


@pytest.mark.parametrize("case", ["duplicate_ids"])
def test_bad_input_stops_the_flow_at_validation(
    case: str, tmp_path: Path, prefect_api: None
) -> None:
    from mlflow.tracking import MlflowClient

    from components.tracking import FAILURE_STAGE_TAG
    from pipelines.retraining import StageFailedError, retraining_flow

    project = make_project(tmp_path / "project", BAD / case)
    overrides = {**FAST, **names()}
    with pytest.raises(StageFailedError) as failure:
        retraining_flow(dataset=f"data/{case}", overrides=overrides, root=str(project))
    message = str(failure.value)
    assert failure.value.stage == "validate"
    assert "corpus.jsonl" in message and "row" in message and "_id" in message

    (workspace,) = (project / ".matryoshka" / "runs").glob("*/workspace")
    runs = workspace / "runs"
    assert (runs / "validation" / "summary.txt").is_file()
    assert not (runs / "validation" / "passed.json").exists()
    for stage in ("embeddings", "pretrain", "finetune", "evaluation"):
        assert not (runs / stage).exists(), f"{stage} output exists after a failed flow"
    client = MlflowClient()
    experiment = client.get_experiment_by_name(overrides["mlflow.experiment_name"])
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags[FAILURE_STAGE_TAG] == "validate"
    assert not [k for k in run.data.metrics if "/dim_" in k]
    assert not client.search_logged_models(experiment_ids=[experiment.experiment_id])
    assert not client.search_model_versions(f"name='{overrides['mlflow.registered_model_name']}'")
    summary = json.dumps([a.path for a in client.list_artifacts(run.info.run_id, "validation")])
    assert "summary.txt" in summary
