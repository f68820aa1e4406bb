"""Acceptance of isolated runs with real processes: ``matryoshka run`` subprocesses in a git
checkout, run side by side, killed with SIGKILL at three points, interrupted with SIGINT and
SIGTERM. After each, the checkout's tracked files are byte-identical, no process of the
run is left, its MLflow run is not ``RUNNING`` and no model version of it remains.

Runs here start their own temporary Prefect API (no ``PREFECT_API_URL``), as ``make run``
does, so its cleanup is part of what is checked.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.stages import BAD, FAST, REPO, TINY, assert_cli_failure, subprocess_env

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def tracked_files(root: Path) -> dict[str, str]:
    """sha256 of every file git tracks, as it is on disk now."""
    return {
        name: hashlib.sha256((root / name).read_bytes()).hexdigest()
        for name in git(root, "ls-files").split()
    }


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A git checkout of the pipeline on the tiny dataset, with one finished run (so the
    DVC and embedding caches are warm), and the environment its runs use."""
    root = tmp_path_factory.mktemp("checkout") / "project"
    root.mkdir()
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy2(REPO / name, root / name)
    shutil.copytree(
        REPO / "components", root / "components", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(TINY, root / "data" / "tiny")
    shutil.copytree(BAD / "duplicate_ids", root / "data" / "duplicate_ids")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["dataset"]["path"] = "data/tiny"
    model_name = f"isolation-{uuid.uuid4().hex[:8]}"
    params["mlflow"]["experiment_name"] = model_name
    params["mlflow"]["registered_model_name"] = model_name
    for dotted, value in FAST.items():
        node = params
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    (root / "params.yaml").write_text("# the user's settings\n" + yaml.safe_dump(params))
    git(root, "init", "-q")
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=root, check=True)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "the user's checkout")
    store = tmp_path_factory.mktemp("mlflow")
    env = subprocess_env(
        MLFLOW_TRACKING_URI=f"sqlite:///{store / 'mlflow.db'}",
        PREFECT_HOME=str(tmp_path_factory.mktemp("prefect-home")),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
    )
    env.pop("PREFECT_API_URL", None)
    state = {"root": root, "env": env, "model_name": model_name, "uri": env["MLFLOW_TRACKING_URI"]}
    first = run(state)
    assert first.returncode == 0, first.stderr[-3000:]
    state["tracked"] = tracked_files(root)
    yield state


def start(state: dict[str, Any], *sets: str) -> subprocess.Popen:
    command = [str(BIN / "matryoshka"), "run"]
    for item in sets:
        command += ["--set", item]
    return subprocess.Popen(
        command,
        cwd=state["root"],
        env=state["env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as in a terminal: a test session started in the background (`pytest &`
        # from a script) ignores SIGINT, and its children would inherit that.
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(state: dict[str, Any], *sets: str, timeout: float = 600) -> subprocess.CompletedProcess:
    process = start(state, *sets)
    out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def records(root: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted((root / ".matryoshka" / "runs").glob("*/run.json")):
        try:
            found[path.parent.name] = json.loads(path.read_text())
        except ValueError:
            continue  # being replaced right now
    return found


def wait_for_step(root: Path, process: subprocess.Popen, step: str) -> dict[str, Any]:
    """The record of the run ``process`` started, once it is in ``step``."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for data in records(root).values():
            if data["owner"]["pid"] == process.pid and data["step"] == step:
                return data
        assert process.poll() is None, f"the run ended before step {step}: {process.stderr.read()}"
        time.sleep(0.02)
    raise AssertionError(f"the run never reached step {step}")


def mlflow_client(state: dict[str, Any]) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=state["uri"], registry_uri=state["uri"])


def running(pid: int, start: int | None) -> bool:
    from components.runs.processes import ProcessIdentity

    return ProcessIdentity(pid, start).alive()


def assert_cleaned_up(state: dict[str, Any], run_id: str, status: str) -> dict[str, Any]:
    """The run's record, processes, MLflow run and registry after it was stopped."""
    root = state["root"]
    deadline = time.monotonic() + 60
    data = records(root)[run_id]
    while data["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
        data = records(root)[run_id]
    assert data["status"] == status, data
    for child in data["children"]:
        assert not running(child["pid"], child["start"]), f"{child['what']} still running"
    sentinel = data.get("sentinel_pid")
    deadline = time.monotonic() + 30
    while sentinel and running(int(sentinel), None) and time.monotonic() < deadline:
        time.sleep(0.2)  # the sentinel exits right after its cleanup
    client = mlflow_client(state)
    mlflow_run = client.get_run(data["mlflow"]["run_id"])
    assert mlflow_run.info.status == ("KILLED" if status == "killed" else "FAILED")
    assert mlflow_run.data.tags["failure.stage"] == data["step"]
    versions = client.search_model_versions(f"name='{state['model_name']}'")
    assert not [v for v in versions if v.run_id == data["mlflow"]["run_id"]]
    if versions:  # @challenger points at a version that exists, never at a deleted one
        challenger = client.get_model_version_by_alias(state["model_name"], "challenger")
        assert challenger.version in {v.version for v in versions}
    return data


def test_two_runs_started_together_both_succeed_with_their_own_params(
    checkout: dict[str, Any],
) -> None:
    seeds = (21, 22)
    processes = [start(checkout, f"method.train.seed={seed}") for seed in seeds]
    with ThreadPoolExecutor(len(processes)) as pool:  # read both pipes: neither run blocks
        results = list(pool.map(lambda p: p.communicate(timeout=900), processes))
    for process, (_, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err[-3000:]
        assert "Traceback" not in err
    assert tracked_files(checkout["root"]) == checkout["tracked"]

    client = mlflow_client(checkout)
    by_seed = {}
    for data in records(checkout["root"]).values():
        seed = (data.get("overrides") or {}).get("method.train.seed")
        if seed in seeds:
            by_seed[seed] = data
    assert set(by_seed) == set(seeds)
    for seed, data in by_seed.items():
        assert data["status"] == "finished"
        mlflow_run = client.get_run(data["mlflow"]["run_id"])
        assert mlflow_run.data.params["method.train.seed"] == str(seed)
        assert mlflow_run.data.tags["pipeline.run"] == data["run_id"]
        version = client.get_model_version(checkout["model_name"], data["registry"]["version"])
        assert version.run_id == mlflow_run.info.run_id
        workspace = checkout["root"] / ".matryoshka" / "runs" / data["run_id"] / "workspace"
        lock = yaml.safe_load((workspace / "dvc.lock").read_text())
        trained = lock["stages"]["finetune"]["params"]["params.yaml"]["method.train"]["seed"]
        assert trained == seed  # what DVC ran the stage with
        stored = json.loads((workspace / "runs/finetune/adaptor/adaptor.json").read_text())
        assert stored["metadata"]["method"]["train"]["seed"] == seed
        from components.tracking import read_run_lineage

        lineage = read_run_lineage(client, mlflow_run.info.run_id)
        finetune = lineage["dvc_lock"]["stages"]["finetune"]
        assert finetune["outs"] and all(
            digest in json.dumps(lock) for digest in finetune["outs"].values()
        )


@pytest.mark.parametrize(
    ("step", "sets", "into_step_s"),
    [
        ("embed", ["embedding.cache_tag=kill-embed"], 1.0),  # loading the model takes seconds
        (
            "pretrain",
            [
                "method.train.unsupervised.max_iterations=200000",
                "method.train.unsupervised.patience=1000000",
                "method.train.unsupervised.start_patience=null",
            ],
            1.0,
        ),
        ("register", [], 0.3),  # logging and registering the model take about a second
    ],
)
def test_kill_9_leaves_nothing_behind_and_the_next_run_succeeds(
    checkout: dict[str, Any], step: str, sets: list[str], into_step_s: float
) -> None:
    root = checkout["root"]
    seed = {"embed": 31, "pretrain": 32, "register": 33}[step]
    process = start(checkout, f"method.train.seed={seed}", *sets)
    data = wait_for_step(root, process, step)
    time.sleep(into_step_s)
    os.kill(process.pid, signal.SIGKILL)
    # communicate() returns only once no descendant holds the run's stdout/stderr: an
    # orphaned stage or Prefect server would make it time out.
    process.communicate(timeout=60)
    assert_cleaned_up(checkout, data["run_id"], "failed")
    assert tracked_files(root) == checkout["tracked"]

    after = run(checkout, f"method.train.seed={seed + 10}")
    assert after.returncode == 0, after.stderr[-3000:]
    assert tracked_files(root) == checkout["tracked"]
    assert not (root / "runs").exists() and not (root / "dvc.lock").exists()
    dead = records(root)[data["run_id"]]
    assert dead["status"] == "failed" and f"during step '{step}'" in dead["message"]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigint_and_sigterm_end_the_stage_group_and_mark_the_run_killed(
    checkout: dict[str, Any], sig: int, code: int
) -> None:
    process = start(
        checkout,
        f"method.train.seed={40 + sig}",
        "method.train.unsupervised.max_iterations=200000",
        "method.train.unsupervised.patience=1000000",
        "method.train.unsupervised.start_patience=null",
    )
    data = wait_for_step(checkout["root"], process, "pretrain")
    time.sleep(1.0)
    os.kill(process.pid, sig)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code
    assert "Traceback" not in err
    cleaned = assert_cleaned_up(checkout, data["run_id"], "killed")
    assert signal.Signals(sig).name in cleaned["message"]
    assert tracked_files(checkout["root"]) == checkout["tracked"]


def test_a_failing_stage_is_one_message_with_the_stage_exit_code(checkout: dict[str, Any]) -> None:
    command = [str(BIN / "matryoshka"), "run", "--dataset", "data/duplicate_ids"]
    done = subprocess.run(
        command, cwd=checkout["root"], env=checkout["env"], capture_output=True, text=True
    )
    assert_cli_failure(
        done.returncode,
        done.stderr,
        1,
        "error: stage 'validate' failed (exit 1):",  # the command's code, not DVC's 255
        "duplicate_ids/corpus.jsonl, row 2, field '_id'",
        "full log:",
    )
    final = done.stderr[done.stderr.index("error: stage 'validate' failed") :]
    assert final.count("Data validation FAILED") == 1  # the summary once, at the end
    assert len(done.stderr.splitlines()) < 80
    assert tracked_files(checkout["root"]) == checkout["tracked"]
