"""End-to-end: the retraining deployment from ``prefect.yaml`` on a real Prefect server.

A real ``prefect server start --host 127.0.0.1`` on a free port, the repo's
``prefect.yaml`` deployed with ``prefect deploy --all``, a process worker, a run triggered
through the REST API on a tiny dataset: the run completes and the registry holds a new
version tagged ``validation_status=pending`` with alias ``challenger``. The promotion
deployment is then triggered (dry run). A canary API key in the worker's environment must
appear nowhere: not in the MLflow store, its artifacts, the Prefect logs or database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.deployment import (
    api,
    deployed_services,
    make_project,
    service_env,
    wait_terminal,
)
from helpers.http import free_port
from helpers.stages import FAST_FLOW as FAST

CANARY = f"sk-canary-{uuid.uuid4().hex}"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def deployed_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("deployment")
    base = f"http://127.0.0.1:{free_port()}/api"
    store = tmp / "mlflow"
    store.mkdir()
    model_name = f"adaptor-{uuid.uuid4().hex[:8]}"
    env = {**service_env(tmp, base, store), "OPENAI_API_KEY": CANARY, "GEMINI_API_KEY": CANARY}
    project = make_project(tmp / "project")
    with deployed_services(tmp, env) as services:
        logs = services.logs
        deployment = api(base, "/deployments/name/matryoshka-retraining/retraining-weekly")
        parameters = {
            "dataset": "data/tiny",
            "provider": "local",
            "root": str(project),
            "overrides": {
                **FAST,
                "mlflow.experiment_name": f"deploy-{model_name}",
                "mlflow.registered_model_name": model_name,
                # the in-flow gate off: this test gates with the promotion deployment
                "registry.run_mode": "disabled",
            },
        }
        flow_run_id = services.run_deployment("matryoshka-retraining/retraining-weekly", parameters)
        finished = wait_terminal(base, flow_run_id, 540, logs["worker"])
        promotion = api(base, "/deployments/name/matryoshka-promotion/promote-challenger")
        gate_run_id = services.run_deployment(
            "matryoshka-promotion/promote-challenger",
            {"model_name": model_name, "root": str(project), "run_mode": "dry_run"},
        )
        gate_finished = wait_terminal(base, gate_run_id, 240, logs["worker"])
        run_logs = []
        for run_id in (flow_run_id, gate_run_id):
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
