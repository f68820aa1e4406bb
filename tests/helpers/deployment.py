"""Helpers for tests that deploy ``prefect.yaml`` on a real Prefect server (no tests here).

A server on a free 127.0.0.1 port, ``prefect deploy --all`` from the repo, a process
worker, REST calls, and a throw-away DVC project on the tiny dataset.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from helpers.http import request_json
from helpers.stages import REPO, TINY

BIN = Path(sys.executable).parent
POOL = "matryoshka-process"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def api(base: str, path: str, payload: Any = None, method: str | None = None) -> Any:
    """The Prefect REST API's JSON answer at ``base + path`` (retrying a busy server)."""
    return request_json(f"{base}{path}", payload, method)


def wait_healthy(base: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited: {log.read_text()[-3000:]}")
        try:
            api(base, "/health")
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"prefect server not healthy after {timeout} s: {log.read_text()[-3000:]}")


def wait_terminal(base: str, run_id: str, timeout: float, worker_log: Path) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api(base, f"/flow_runs/{run_id}")
        if run["state"]["type"] in TERMINAL:
            return run
        time.sleep(2)
    raise TimeoutError(
        f"flow run {run_id} still {run['state']['type']} after {timeout} s; "
        f"worker: {worker_log.read_text()[-3000:]}"
    )


def make_project(root: Path) -> Path:
    """A throw-away DVC project: the repo's dvc.yaml/params.yaml/components, tiny data."""
    root.mkdir(parents=True)
    shutil.copy2(REPO / "dvc.yaml", root / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["dataset"]["path"] = "data/tiny"
    params["embedding"]["provider"] = "local"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(
        REPO / "components", root / "components", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(TINY, root / "data" / "tiny")
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=root, check=True)
    return root


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def wait_state(base: str, run_id: str, states: set[str], timeout: float, worker_log: Path) -> dict:
    """The flow run once its state type is one of ``states`` (or terminal)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api(base, f"/flow_runs/{run_id}")
        if run["state"]["type"] in states | TERMINAL:
            return run
        time.sleep(1)
    raise TimeoutError(
        f"flow run {run_id} still {run['state']['type']} after {timeout} s; "
        f"worker: {worker_log.read_text()[-3000:]}"
    )


def service_env(tmp: Path, base: str, store: Path) -> dict[str, str]:
    """The server's and worker's environment: offline, telemetry off, MLflow at ``store``."""
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PWD": str(REPO),  # prefect.yaml's pull step: {{ $PWD }} at deploy time
        "PREFECT_HOME": str(tmp / "prefect-home"),
        "PREFECT_API_URL": base,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    return env


@dataclass(frozen=True)
class Deployed:
    """A running server with ``prefect.yaml`` deployed and a worker polling the pool."""

    base: str
    env: dict[str, str]
    logs: dict[str, Path]

    def run_deployment(self, name: str, parameters: dict[str, Any]) -> str:
        """Create a flow run of deployment ``name`` (``flow/deployment``); its id."""
        deployment = api(self.base, f"/deployments/name/{name}")
        flow_run = api(
            self.base,
            f"/deployments/{deployment['id']}/create_flow_run",
            {"parameters": parameters},
        )
        return str(flow_run["id"])


@contextmanager
def deployed_services(tmp: Path, env: dict[str, str]) -> Iterator[Deployed]:
    """Start the server, deploy every deployment of ``prefect.yaml``, start a worker;
    stop both on exit."""
    base = env["PREFECT_API_URL"]
    port = base.rsplit(":", 1)[1].split("/")[0]
    logs = {name: tmp / f"{name}.log" for name in ("server", "worker")}
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", port],
        cwd=tmp,
        env=env,
        stdout=logs["server"].open("w"),
        stderr=subprocess.STDOUT,
    )
    worker = None
    try:
        wait_healthy(base, server, logs["server"], timeout=180)
        prefect = [str(BIN / "prefect"), "--no-prompt"]
        for command in (["work-pool", "create", POOL, "--type", "process"], ["deploy", "--all"]):
            done = subprocess.run(
                [*prefect, *command], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        worker = subprocess.Popen(
            [*prefect, "worker", "start", "--pool", POOL, "--limit", "1"],
            cwd=tmp,
            env=env,
            stdout=logs["worker"].open("w"),
            stderr=subprocess.STDOUT,
        )
        yield Deployed(base, env, logs)
    finally:
        if worker is not None:
            stop(worker)  # the worker first: it retries for minutes without a server
        stop(server)
