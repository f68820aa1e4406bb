"""End-to-end: the retraining deployment from ``prefect.yaml`` on a real Prefect server.

A real ``prefect server start --host 127.0.0.1`` on a free port, the repo's
``prefect.yaml`` deployed with ``prefect deploy --all``, a process worker, a run triggered
through the REST API on a tiny dataset: the run completes and the registry holds a new
version tagged ``validation_status=pending`` with alias ``challenger``. The promotion
deployment is then triggered (dry run). A canary API key in the worker's environment must
appear nowhere: not in the MLflow store, its artifacts, the Prefect logs or database.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.stages import FAST_FLOW as FAST
from helpers.stages import REPO, TINY

BIN = Path(sys.executable).parent
CANARY = f"sk-canary-{uuid.uuid4().hex}"
POOL = "matryoshka-process"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api(base: str, path: str, payload: Any = None, method: str | None = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        f"{base}{path}",
        data=data,
        method=method or ("POST" if data is not None else "GET"),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    return json.loads(body) if body else None


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


@pytest.fixture(scope="module")
def deployed_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("deployment")
    port = free_port()
    base = f"http://127.0.0.1:{port}/api"
    store = tmp / "mlflow"
    store.mkdir()
    model_name = f"adaptor-{uuid.uuid4().hex[:8]}"
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
        "OPENAI_API_KEY": CANARY,
        "GEMINI_API_KEY": CANARY,
    }
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    project = make_project(tmp / "project")
    logs = {name: tmp / f"{name}.log" for name in ("server", "worker")}
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
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
        deployment = api(base, "/deployments/name/matryoshka-retraining/retraining-weekly")
        parameters = {
            "dataset": "data/tiny",
            "provider": "local",
            "root": str(project),
            "overrides": {
                **FAST,
                "mlflow.experiment_name": f"deploy-{model_name}",
                "mlflow.registered_model_name": model_name,
            },
        }
        flow_run = api(
            base, f"/deployments/{deployment['id']}/create_flow_run", {"parameters": parameters}
        )
        finished = wait_terminal(base, flow_run["id"], 540, logs["worker"])
        promotion = api(base, "/deployments/name/matryoshka-promotion/promote-challenger")
        gate_run = api(
            base,
            f"/deployments/{promotion['id']}/create_flow_run",
            {"parameters": {"model_name": model_name, "root": str(project), "run_mode": "dry_run"}},
        )
        gate_finished = wait_terminal(base, gate_run["id"], 240, logs["worker"])
        run_logs = []
        for run_id in (flow_run["id"], gate_run["id"]):
            offset = 0
            while True:
                page = api(
                    base,
                    "/logs/filter",
                    {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200, "offset": offset},
                )
                run_logs += page
                offset += len(page)
                if len(page) < 200:
                    break
        schedules = {
            name: api(base, f"/deployments/{d['id']}")["schedules"]
            for name, d in (("retraining", deployment), ("promotion", promotion))
        }
        yield {
            "run": finished,
            "gate_run": gate_finished,
            "logs": run_logs,
            "schedules": schedules,
            "deployment": deployment,
            "model_name": model_name,
            "tracking_uri": env["MLFLOW_TRACKING_URI"],
            "store": store,
            "tmp": tmp,
            "project": project,
            "log_files": logs,
        }
    finally:
        if worker is not None:
            stop(worker)  # the worker first: it retries for minutes without a server
        stop(server)


def test_retraining_deployment_registers_a_pending_challenger(deployed_run: dict) -> None:
    from mlflow.tracking import MlflowClient

    run = deployed_run["run"]
    assert run["state"]["type"] == "COMPLETED", (
        run["state"],
        deployed_run["log_files"]["worker"].read_text()[-4000:],
    )
    assert deployed_run["deployment"]["entrypoint"] == "pipelines/retraining.py:retraining_flow"
    (weekly,) = deployed_run["schedules"]["retraining"]
    assert weekly["schedule"]["cron"] == "0 3 * * 1" and weekly["active"]
    assert deployed_run["schedules"]["promotion"] == []
    assert any("registered" in entry["message"] for entry in deployed_run["logs"])
    client = MlflowClient(tracking_uri=deployed_run["tracking_uri"])
    name = deployed_run["model_name"]
    (version,) = client.search_model_versions(f"name='{name}'")
    assert version.tags["validation_status"] == "pending"
    assert client.get_model_version_by_alias(name, "challenger").version == version.version
    assert version.tags["trained_dims"] == "16,32,64,128,256,384"
    assert client.get_run(version.run_id).info.status == "FINISHED"
    # The promotion deployment ran the gate (dry run): decided, logged, moved nothing.
    assert deployed_run["gate_run"]["state"]["type"] == "COMPLETED"
    gated = client.get_model_version(name, version.version)
    assert gated.tags["gate_dry_run"] in {"passed", "failed"}
    assert gated.tags["validation_status"] == "pending"
    assert "champion" not in client.get_registered_model(name).aliases


def test_canary_api_key_appears_nowhere(deployed_run: dict) -> None:
    needle = CANARY.encode()
    leaks = [entry["message"] for entry in deployed_run["logs"] if CANARY in entry["message"]]
    places = [
        deployed_run["store"],
        deployed_run["tmp"] / "prefect-home",
        *deployed_run["log_files"].values(),
    ]
    for place in places:
        files = [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file()]
        leaks += [str(path) for path in files if needle in path.read_bytes()]
    assert len(deployed_run["logs"]) > 10  # the logs were really searched
    assert not leaks, f"canary API key found in: {leaks[:10]}"
