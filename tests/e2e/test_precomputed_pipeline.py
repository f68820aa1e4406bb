"""Bring your own vectors, end to end: ``matryoshka run`` with ``embedding.provider:
precomputed`` registers the same adaptor as the pipeline trains from extracted vectors.

Reference: the stages in this process on the tiny dataset (the bundled local model
extracts; pretrain, finetune and evaluate with the project's params). Its
``runs/embeddings`` are exported to Parquet (rows shuffled, as a vector database returns
them) into a copy of the dataset (``data/vectors/tiny/embeddings/``, same dataset name) in a
plain project folder, and ``matryoshka run --provider precomputed`` trains and registers
from them (real Prefect flow, DVC stages, MLflow registry). Same seed, same vectors: the
embed outputs are byte-identical, the pretrain/finetune weights and the registered
version's weights are byte-identical to the reference, and every evaluation number is
equal. Then a vector file is changed and ``dvc status`` in the run's workspace names the
embed stage (the files are deps through ``${dataset.path}``).

The two paths are compared across processes on purpose: the stages run single-threaded
(``OMP_NUM_THREADS=1`` there, ``torch.set_num_threads(1)`` in tests/conftest.py), so equal
inputs and seed give equal bits.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.stages import FAST, REPO, TINY, subprocess_env
from helpers.vectors import export_parquet

from components.embedding import load_embeddings
from components.layout import RunLayout

BIN = REPO / ".venv" / "bin"

pytestmark = pytest.mark.slow


def make_project(root: Path, model_name: str) -> Path:
    root.mkdir(parents=True)
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy2(REPO / name, root / name)
    shutil.copytree(
        REPO / "components", root / "components", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(TINY, root / "data" / "vectors" / "tiny")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["mlflow"]["experiment_name"] = model_name
    params["mlflow"]["registered_model_name"] = model_name
    params["registry"]["run_mode"] = "disabled"  # registration only; the gate is not tested here
    for dotted, value in FAST.items():
        node = params
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=root, check=True)
    return root


def reference_run(root: Path, out: Path) -> RunLayout:
    """embed -> evaluate in this process, extraction by the local model (the reference)."""
    from components.params import load_params
    from components.stages import run_stage

    overrides = {
        "dataset.path": str(TINY),
        "embedding.provider": "local",
        "embedding.cache_dir": str(out.parent / "cache"),
    }
    params = load_params(root / "params.yaml", overrides)
    layout = RunLayout(root=out)
    for stage in ("embed", "pretrain", "finetune", "evaluate"):
        run_stage(stage, params, layout=layout)
    return layout


def run_pipeline(root: Path, env: dict[str, str], *args: str) -> Path:
    """``matryoshka run ARGS``; returns the new run's workspace."""
    done = subprocess.run(
        [str(BIN / "matryoshka"), "run", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    (workspace,) = (root / ".matryoshka" / "runs").glob("*/workspace")
    return workspace


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_precomputed_vectors_register_the_same_adaptor_as_extraction(
    tmp_path: Path,
) -> None:
    from mlflow.tracking import MlflowClient

    from components.registry.load import download_version
    from components.registry.packaging import ADAPTOR_ARTIFACT

    model_name = f"byov-{uuid.uuid4().hex[:8]}"
    root = make_project(tmp_path / "project", model_name)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = subprocess_env(
        MLFLOW_TRACKING_URI=uri,
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
    )
    env.pop("PREFECT_API_URL", None)

    reference = reference_run(root, tmp_path / "reference" / "runs")
    vectors = root / "data" / "vectors" / "tiny"
    export_parquet(load_embeddings(reference.embeddings), vectors, shuffle_seed=7)
    byov = run_pipeline(
        root,
        env,
        "--dataset",
        "data/vectors/tiny",
        "--provider",
        "precomputed",
        "--set",
        "embedding.precomputed.normalized=true",
    )
    runs = RunLayout().under(byov)

    meta: dict[str, Any] = json.loads(runs.embeddings_meta.read_text())
    assert meta["provider"] == "precomputed"
    assert set(meta["sources"]) == {"embeddings/corpus.parquet", "embeddings/queries.parquet"}
    for name in ("corpus.npy", "queries.npy", "corpus_ids.json", "queries_ids.json"):
        assert digest(runs.embeddings / name) == digest(reference.embeddings / name), name
    for stage in ("pretrain", "finetune"):
        weights = Path(stage) / "adaptor" / "adaptor.safetensors"
        assert digest(runs.root / weights) == digest(reference.root / weights), stage
    measured = [json.loads(layout.metrics_json.read_text()) for layout in (reference, runs)]
    assert measured[0]["metrics"] == measured[1]["metrics"]
    assert measured[1]["provider"] == "precomputed"

    client = MlflowClient(uri)
    (version,) = client.search_model_versions(f"name='{model_name}'")
    registered = download_version(client, model_name, version.version, tmp_path / "registered")
    weights = registered / "artifacts" / ADAPTOR_ARTIFACT / "adaptor.safetensors"
    assert digest(weights) == digest(reference.finetune_adaptor / "adaptor.safetensors")
    assert client.get_run(version.run_id).data.params["embedding.provider"] == "precomputed"

    # A changed vector file makes the embed stage stale (a DVC dep via ${dataset.path}).
    assert "embed" not in dvc_status(byov, env)
    export_parquet(
        load_embeddings(reference.embeddings), byov / "data/vectors/tiny", shuffle_seed=8
    )
    status = dvc_status(byov, env)
    assert "embed:" in status and "data/vectors/tiny" in status, status


def dvc_status(workspace: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(BIN / "dvc"), "status", "embed"],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout
