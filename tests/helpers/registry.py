"""Helpers shared by the registry, serving and deployment tests (no tests here).

Synthetic embeddings with planted structure: each document's identity lives in its last 4
of 16 coordinates, the first 12 are large nuisance noise that differs between a query and
its document. Truncation, PCA and the SVD rotation keep the nuisance at small m; the
supervised ranking loss learns to move the identity forward. Training on shuffled labels
gives a clearly worse adaptor.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.nn import functional as F

from components.adaptor import save_adaptor
from components.baselines import BASELINE_NAMES
from components.config import AdaptorConfig, LossConfig, MethodConfig, OptimConfig, TrainConfig
from components.registry import register_run_model
from components.registry.evaluation_set import EvaluationSet
from components.tracking.lineage import LINEAGE_ARTIFACT, GitInfo, Lineage
from components.training import train_adaptor

D, SIGNAL, N_DOCS, N_QUERIES, N_TRAIN = 16, 4, 300, 120, 80
TRAINED_DIMS = (4, 8, 16)
BASELINES = BASELINE_NAMES  # what the gate's default (registry.baselines: null) compares


@dataclass(frozen=True)
class Planted:
    corpus: torch.Tensor
    corpus_ids: list[str]
    queries: torch.Tensor
    query_ids: list[str]
    train_qrels: pd.DataFrame
    test_qrels: pd.DataFrame

    def evaluation_set(self) -> EvaluationSet:
        return EvaluationSet(
            self.corpus.numpy(),
            self.corpus_ids,
            self.queries.numpy(),
            self.query_ids,
            self.test_qrels,
            name="planted/test",
            fingerprint="planted-0",
        )


def planted(seed: int = 0, noise: float = 0.6) -> Planted:
    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(N_DOCS, SIGNAL, generator=g)
    docs = F.normalize(
        torch.cat([noise * torch.randn(N_DOCS, D - SIGNAL, generator=g), latent], 1), dim=-1
    )
    queries = F.normalize(
        torch.cat(
            [
                noise * torch.randn(N_QUERIES, D - SIGNAL, generator=g),
                latent[:N_QUERIES] + 0.1 * torch.randn(N_QUERIES, SIGNAL, generator=g),
            ],
            1,
        ),
        dim=-1,
    )
    doc_ids = [f"d{i}" for i in range(N_DOCS)]
    query_ids = [f"q{i}" for i in range(N_QUERIES)]
    qrels = pd.DataFrame({"query_id": query_ids, "doc_id": doc_ids[:N_QUERIES], "score": 1})
    return Planted(
        docs,
        doc_ids,
        queries,
        query_ids,
        qrels.iloc[:N_TRAIN].reset_index(drop=True),
        qrels.iloc[N_TRAIN:].reset_index(drop=True),
    )


def method_config(iterations: int) -> MethodConfig:
    stage = OptimConfig(
        learning_rate=3e-3,
        batch_size=64,
        max_iterations=iterations,
        patience=iterations,
        eval_every=max(iterations // 4, 1),
    )
    return MethodConfig(
        adaptor=AdaptorConfig(use_rotation=True),
        loss=LossConfig(prefix_dims=TRAINED_DIMS, top_k=5, gamma=5.0),
        train=TrainConfig(
            unsupervised=OptimConfig(max_iterations=1, eval_every=1, patience=1),
            supervised=stage,
            device="cpu",
        ),
    )


def train_variants(data: Planted, out: Path) -> dict[str, Path]:
    """``medium`` (few steps), ``good`` and ``shuffled`` (labels permuted) adaptor dirs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is much faster on a shared CPU
    try:
        shuffled = data.train_qrels.copy()
        shuffled["doc_id"] = shuffled["doc_id"].sample(frac=1.0, random_state=0).to_numpy()
        dirs = {}
        for name, iterations, labels in (
            ("medium", 20, data.train_qrels),
            ("good", 150, data.train_qrels),
            ("shuffled", 60, shuffled),
        ):
            result = train_adaptor(
                data.corpus,
                method_config(iterations),
                data.corpus_ids,
                data.queries,
                data.query_ids,
                labels,
            )
            dirs[name] = save_adaptor(
                result.supervised_adaptor,
                out / name,
                {
                    "provider": "synthetic",
                    "base_model": "planted-16",
                    "dim": D,
                    "prefix_dims": list(TRAINED_DIMS),
                    "dataset_fingerprint": "planted-0",
                },
            )
        return dirs
    finally:
        torch.set_num_threads(threads)


def evaluation_document(data: Planted, adaptor_dir: Path) -> dict[str, Any]:
    """What the evaluate stage writes to metrics.json, for one adaptor on ``data``."""
    from components.adaptor import load_adaptor
    from components.registry.evaluation_set import compare_on_set

    adaptor, _ = load_adaptor(adaptor_dir)
    report = compare_on_set(
        data.evaluation_set(), {"adaptor_supervised": adaptor}, TRAINED_DIMS, BASELINES
    )
    return json.loads(json.dumps(report.to_json()))


@contextmanager
def mlflow_store(root: Path) -> Iterator[str]:
    """A SQLite MLflow store under ``root`` with an experiment whose artifacts stay there;
    ``MLFLOW_TRACKING_URI`` / ``MLFLOW_EXPERIMENT_ID`` point at it meanwhile."""
    import mlflow

    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")}
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("tests", artifact_location=(root / "artifacts").as_uri())
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["MLFLOW_EXPERIMENT_ID"] = experiment
    try:
        yield uri
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


STAGES = ("validate", "embed", "pretrain", "finetune", "evaluate")
LOCK_DIGEST = "d" * 64


def planted_lineage() -> Lineage:
    """A lineage document as the retraining flow logs it: five stages, a dozen hashes."""
    stages = {
        stage: {
            "deps": {f"params.yaml:{stage}": f"{stage}-dep-md5", "data/planted": "data-md5.dir"},
            "outs": {f"runs/{stage}": f"{stage}-out-md5.dir"},
        }
        for stage in STAGES
    }
    return Lineage(
        git=GitInfo("0123abc", "main", False),
        dvc_lock_digest=LOCK_DIGEST,
        stages=stages,
        dataset_fingerprint="planted-0",
    )


def finished_run(uri: str, name: str = "pipeline") -> str:
    """A finished pipeline run to register from (what the retraining flow leaves: params,
    lineage tags and ``lineage/lineage.json``)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.create_run(os.environ["MLFLOW_EXPERIMENT_ID"], run_name=name)
    client.log_param(run.info.run_id, "method.train.seed", "0")
    lineage = planted_lineage()
    for key, value in lineage.tags().items():
        client.set_tag(run.info.run_id, key, value)
    client.log_text(run.info.run_id, lineage.to_json(), LINEAGE_ARTIFACT)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def write_planted_project(data: Planted, root: Path, registry: dict[str, Any]) -> Path:
    """A project folder for the gate on ``data``: a BEIR dataset (the planted ids and test
    labels), its embeddings and a ``params.yaml`` with ``registry`` (plus the embeddings
    folder); returns the params file."""
    import yaml

    from components.embedding.store import save_embeddings

    dataset = root / "dataset"
    (dataset / "qrels").mkdir(parents=True)
    (dataset / "corpus.jsonl").write_text(
        "".join(
            json.dumps({"_id": i, "title": "", "text": f"doc {i}"}) + "\n" for i in data.corpus_ids
        )
    )
    (dataset / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": i, "text": f"query {i}"}) + "\n" for i in data.query_ids)
    )
    (dataset / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n"
        + "".join(f"{r.query_id}\t{r.doc_id}\t{r.score}\n" for r in data.test_qrels.itertuples())
    )
    save_embeddings(
        root / "embeddings",
        corpus_ids=data.corpus_ids,
        corpus=data.corpus.numpy(),
        query_ids=data.query_ids,
        queries=data.queries.numpy(),
        meta={"provider": "synthetic"},
    )
    params = {
        "dataset": {"path": str(dataset), "test_split": "test"},
        "evaluation": {"dims": list(TRAINED_DIMS)},
        "registry": {"embeddings_dir": str(root / "embeddings"), **registry},
    }
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def register_variant(
    store: str, adaptors: dict[str, Path], data: Planted, name: str, variant: str
) -> str:
    """Register the planted adaptor ``variant`` (see :func:`train_variants`) as a new
    ``@challenger`` of ``name`` from a finished run of its own; returns the version."""
    version = register_run_model(
        finished_run(store, variant),
        adaptors[variant],
        evaluation_document(data, adaptors[variant]),
        {"git_commit": "0123abc", "dvc_hashes": {"embed": "md5-e"}},
        model_name=name,
    )
    return str(version.version)
