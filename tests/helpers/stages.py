"""Helpers shared by the stage, CLI and DVC tests (no tests here).

A tiny BEIR dataset (``tests/fixtures/pipeline/tiny``: 40 documents, 16 queries, train and test
labels), synthetic 16-d embeddings written with ``save_embeddings`` (no model runs), and
params overrides that make both training stages take well under a second.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from components.data import load_dataset
from components.embedding import EmbeddingArtifacts, save_embeddings

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "fixtures" / "pipeline" / "tiny"
BAD = REPO / "tests" / "fixtures" / "bad"
DIM = 16

#: Fast, d=16 settings for every stage (dotted params.yaml keys).
FAST: dict[str, Any] = {
    "method.loss.prefix_dims": [4, 8, 16],
    "method.train.unsupervised.max_iterations": 12,
    "method.train.unsupervised.eval_every": 4,
    "method.train.supervised.max_iterations": 12,
    "method.train.supervised.eval_every": 4,
    "method.train.device": "cpu",
    "evaluation.dims": [4, 8, 16],
    "validation.build_data_docs": False,
}

#: Fast settings for whole-flow runs on TINY with the real 384-d local model.
FAST_FLOW: dict[str, Any] = {
    "method.train.unsupervised.max_iterations": 30,
    "method.train.supervised.max_iterations": 30,
    "method.train.unsupervised.eval_every": 10,
    "method.train.supervised.eval_every": 10,
    "method.train.unsupervised.batch_size": 16,
    "method.train.supervised.batch_size": 8,
    "validation.build_data_docs": False,
}

#: Environment for subprocesses: offline, no telemetry, one torch thread (the machine is
#: shared; two contending threads make tiny trainings ~50x slower).
SUBPROCESS_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONWARNINGS": "ignore::DeprecationWarning",
}


def subprocess_env(**extra: str) -> dict[str, str]:
    """``os.environ`` + :data:`SUBPROCESS_ENV` + the venv's ``bin`` first on PATH."""
    env = {**os.environ, **SUBPROCESS_ENV, **extra}
    env["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run torch single-threaded for the test, then restore the previous setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def copy_dataset(target: Path, source: Path = TINY, *, drop_train: bool = False) -> Path:
    """A writable copy of a fixture dataset (optionally without training labels)."""
    shutil.copytree(source, target)
    if drop_train:
        (target / "qrels" / "train.tsv").unlink()
    return target


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def synthetic_embeddings(
    out_dir: Path, dataset_dir: Path = TINY, dim: int = DIM, seed: int = 0
) -> EmbeddingArtifacts:
    """Unit-norm random embeddings for a dataset, each query close to its first positive
    document, written like the embed stage writes them."""
    dataset = load_dataset(dataset_dir)
    rng = np.random.default_rng(seed)
    corpus = unit_rows(rng.standard_normal((len(dataset.corpus), dim)))
    position = {doc: i for i, doc in enumerate(dataset.corpus["id"])}
    queries = unit_rows(rng.standard_normal((len(dataset.queries), dim)))
    for frame in dataset.qrels.values():
        for query, doc in zip(frame["query_id"], frame["doc_id"], strict=True):
            row = dataset.queries.index[dataset.queries["id"] == query][0]
            queries[row] = unit_rows(corpus[position[doc]][None] + 0.3 * queries[row][None])[0]
    meta = {
        "provider": "synthetic",
        "model": "random-16",
        "normalize": True,
        "dataset": dataset.name,
        "dataset_fingerprint": dataset.fingerprint(),
    }
    return save_embeddings(
        out_dir,
        corpus_ids=dataset.corpus["id"].tolist(),
        corpus=corpus,
        query_ids=dataset.queries["id"].tolist(),
        queries=queries,
        meta=meta,
    )


def assert_cli_failure(code: int, err: str, expected_code: int, *fragments: str) -> None:
    """A CLI failure as a user sees it: the exit code, every fragment of the one message,
    and no Python traceback (those only appear with ``-v``)."""
    assert code == expected_code, f"exit {code}, expected {expected_code}:\n{err}"
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in:\n{err}"
    assert "Traceback" not in err, err
