"""``dvc repro`` end to end in a scratch copy of the repository layout (offline).

A git repo in ``tmp_path`` gets this repository's ``dvc.yaml``, ``.dvc/config``,
``.dvcignore``, ``.gitignore`` and ``components/``, a tiny dataset and a params.yaml with fast
settings; embeddings come from the OpenAI-protocol test server (``tests/embedding_servers``),
so no model is loaded. Checks: a first repro runs all five stages; a second runs nothing;
changing a training parameter re-runs exactly pretrain/finetune/evaluate; changing a dataset
threshold re-runs only validate; ``dvc push`` to the default remote (``~`` is pointed at
``tmp_path``) and ``dvc pull`` into a fresh ``git clone`` restore every output.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.embedding_servers import OpenAITestServer
from helpers.stages import DIM, FAST, REPO, TINY, subprocess_env

KEY = "dvc-test-key-0001"
STAGES = {"validate", "embed", "pretrain", "finetune", "evaluate"}

pytestmark = pytest.mark.slow


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def write_params(repo: Path, server: OpenAITestServer, **changes: Any) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    values = {
        **FAST,
        "dataset.path": "data/tiny",
        "embedding.provider": "openai",
        "embedding.model": "dvc-test-model",
        "embedding.base_url": server.base_url,
        "embedding.api_key_env": "DVC_TEST_KEY",
        "embedding.dimensions": DIM,
        "embedding.progress": "off",
        "embedding.max_retries": 1,
        **changes,
    }
    for key, value in values.items():
        _set(params, key, value)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture
def server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer(api_key=KEY, dim=DIM) as srv:
        yield srv


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "home").mkdir()
    return subprocess_env(
        HOME=str(tmp_path / "home"),  # the default remote is ~/.cache/...: keep it here
        DVC_SITE_CACHE_DIR=str(tmp_path / "dvc-site"),
        DVC_TEST_KEY=KEY,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
        PREFECT_HOME=str(tmp_path / "prefect"),
    )


def sh(cwd: Path, env: dict[str, str], *cmd: str) -> str:
    done = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=400)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(cmd)} failed ({done.returncode}):\n{output}"
    return output


def dvc(cwd: Path, env: dict[str, str], *args: str) -> str:
    start = time.perf_counter()
    output = sh(cwd, env, str(REPO / ".venv" / "bin" / "dvc"), *args)
    print(f"dvc {' '.join(args)}: {time.perf_counter() - start:.1f}s")  # shown with -s
    return output


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([\w-]+)'", output))


def make_repo(root: Path, server: OpenAITestServer, env: dict[str, str]) -> Path:
    repo = root / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy2(REPO / name, repo / name)
    (repo / ".dvc").mkdir()
    for name in ("config", ".gitignore"):
        shutil.copy2(REPO / ".dvc" / name, repo / ".dvc" / name)
    shutil.copytree(
        REPO / "components",
        repo / "components",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    shutil.copytree(TINY, repo / "data" / "tiny")
    write_params(repo, server)
    sh(repo, env, "git", "init", "-q")
    return repo


def test_repro_reruns_only_what_changed_and_push_pull(
    tmp_path: Path, server: OpenAITestServer, env: dict[str, str]
) -> None:
    repo = make_repo(tmp_path, server, env)

    first = dvc(repo, env, "repro")
    assert ran(first) == STAGES, first
    for path in (
        "runs/validation/passed.json",
        "runs/embeddings/meta.json",
        "runs/pretrain/adaptor/adaptor.json",
        "runs/finetune/adaptor/adaptor.json",
        "runs/evaluation/metrics.json",
        "runs/evaluation/ndcg_vs_dim.csv",
    ):
        assert (repo / path).is_file(), path
    requests = server.received

    cache = repo / "components" / "validation" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "runner.cpython-311.pyc").write_bytes(b"byte-code")  # .dvcignore'd
    again = dvc(repo, env, "repro")
    assert ran(again) == set(), again
    assert "up to date" in again
    assert server.received == requests

    write_params(repo, server, **{"method.train.unsupervised.max_iterations": 8})
    status = dvc(repo, env, "status")
    assert "pretrain" in status and "validate:" not in status and "embed:" not in status
    changed = dvc(repo, env, "repro")
    assert ran(changed) == {"pretrain", "finetune", "evaluate"}, changed
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    pretrain_params = lock["stages"]["pretrain"]["params"]["params.yaml"]
    assert pretrain_params["method.train"]["unsupervised"]["max_iterations"] == 8
    assert server.received == requests  # nothing re-embedded

    write_params(
        repo,
        server,
        **{
            "method.train.unsupervised.max_iterations": 8,
            "validation.corpus_text_max_chars": 50_000,
        },
    )
    threshold = dvc(repo, env, "repro")
    assert ran(threshold) == {"validate"}, threshold  # passed.json unchanged: embed skipped

    metrics = dvc(repo, env, "metrics", "show")
    assert "base_full_ndcg" in metrics

    sh(repo, env, "git", "add", "-A")
    sh(repo, env, "git", "commit", "-q", "-m", "pipeline run")
    tracked = sh(repo, env, "git", "ls-files").split()
    assert "dvc.lock" in tracked
    # Every stage output is DVC-cached (none `cache: false`): nothing under runs/ in git.
    assert not any(p.startswith("runs/") for p in tracked)

    dvc(repo, env, "push")
    remote = tmp_path / "home" / ".cache" / "matryoshka-adaptor" / "dvc-remote"
    assert any(remote.rglob("*")), "nothing pushed to the default remote"

    clone = tmp_path / "clone"
    sh(tmp_path, env, "git", "clone", "-q", str(repo), str(clone))
    assert not (clone / "runs" / "pretrain").exists()
    pulled = dvc(clone, env, "pull")
    assert "M " not in pulled
    for path in (
        "runs/validation/passed.json",
        "runs/embeddings/corpus.npy",
        "runs/pretrain/adaptor/adaptor.safetensors",
        "runs/finetune/history.json",
        "runs/evaluation/metrics.csv",
        "runs/evaluation/metrics.json",
        "runs/evaluation/table.txt",
    ):
        assert (clone / path).read_bytes() == (repo / path).read_bytes(), path
    assert ran(dvc(clone, env, "repro")) == set()
