"""End-to-end: the team set-up of docs/deploy.md, MLflow and Prefect servers on PostgreSQL.

A throw-away PostgreSQL cluster (session fixture ``postgres``) holds both stores. A real
``mlflow server`` uses it as ``--backend-store-uri`` and serves artifacts from its own
``--artifacts-destination``; a real ``prefect server start`` uses it through
``PREFECT_SERVER_DATABASE_CONNECTION_URL``. Clients only know the two HTTP addresses.

* the cluster itself: 127.0.0.1 only, password authentication over TCP, stopped and
  deleted when the body fails;
* registry: registration, the gate (promote), a rejected challenger, a rollback and
  ``load_champion``, every artifact going through the server; the registry state is read
  back from PostgreSQL itself;
* pipeline: the retraining flow on the tiny fixture, tracked by the Prefect server (the
  completed flow run is in its PostgreSQL database) and the MLflow server (a registered
  ``@challenger``); the client's tracking URI carries a credential and the database
  password is in the servers' environment: neither appears in any log, param or record.
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.deployment import stop
from helpers.http import free_port, request_json
from helpers.postgres import PostgresCluster, postgres_cluster
from helpers.registry import evaluation_document, finished_run, planted, train_variants
from helpers.stages import FAST_FLOW, REPO, TINY, subprocess_env

from components.adaptor import load_adaptor
from components.registry import (
    CHALLENGER,
    CHAMPION,
    RegistryConfig,
    load_champion,
    promote,
    register_run_model,
    rollback,
)

BIN = Path(sys.executable).parent
#: In the client's tracking URI (``http://team:<token>@host``): must be masked everywhere.
CLIENT_TOKEN = f"tok-{uuid.uuid4().hex}"

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Services:
    """The two running servers and where their state lives."""

    pg: PostgresCluster
    mlflow_uri: str  # http://127.0.0.1:<port>, what clients set as MLFLOW_TRACKING_URI
    prefect_api: str  # http://127.0.0.1:<port>/api, PREFECT_API_URL
    artifacts: Path  # the MLflow server's --artifacts-destination
    tmp: Path
    logs: dict[str, Path]


def wait_healthy(
    servers: dict[str, tuple[str, subprocess.Popen, Path]], timeout: float = 240
) -> None:
    """Poll every server's health URL until all answer (they start side by side)."""
    pending = dict(servers)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for name, (url, process, log) in list(pending.items()):
            if process.poll() is not None:
                raise RuntimeError(f"{name} server exited: {log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=5).close()
                del pending[name]
            except OSError:
                pass
        time.sleep(1)
    if pending:
        tails = {name: log.read_text()[-2000:] for name, (_, _, log) in pending.items()}
        raise TimeoutError(f"not healthy after {timeout} s: {tails}")


@pytest.fixture(scope="module")
def services(
    postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    tmp = tmp_path_factory.mktemp("team")
    artifacts = tmp / "served-artifacts"
    mlflow_port, prefect_port = free_port(), free_port()
    base = subprocess_env()
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "PREFECT_API_URL"):
        base.pop(key, None)
    # Passwords reach the servers through their environment only (docs/deploy.md).
    mlflow_env = {
        **base,
        "MLFLOW_BACKEND_STORE_URI": postgres.url("mlflow", password=postgres.password),
        "MLFLOW_ARTIFACTS_DESTINATION": str(artifacts),
    }
    prefect_env = {
        **base,
        "PREFECT_HOME": str(tmp / "prefect-home"),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": postgres.url(
            "prefect", password=postgres.password, scheme="postgresql+asyncpg"
        ),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
    }
    logs = {name: tmp / f"{name}-server.log" for name in ("mlflow", "prefect")}
    mlflow_server = subprocess.Popen(
        [
            *(str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port)),
            *("--workers", "1"),  # one process is plenty for a test, and starts faster
        ],
        cwd=tmp,
        env=mlflow_env,
        stdout=logs["mlflow"].open("w"),
        stderr=subprocess.STDOUT,
    )
    prefect_server = subprocess.Popen(
        [
            str(BIN / "prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(prefect_port),
        ],
        cwd=tmp,
        env=prefect_env,
        stdout=logs["prefect"].open("w"),
        stderr=subprocess.STDOUT,
    )
    mlflow_uri = f"http://127.0.0.1:{mlflow_port}"
    prefect_api = f"http://127.0.0.1:{prefect_port}/api"
    try:
        wait_healthy(
            {
                "mlflow": (f"{mlflow_uri}/health", mlflow_server, logs["mlflow"]),
                "prefect": (f"{prefect_api}/health", prefect_server, logs["prefect"]),
            }
        )
        yield Services(postgres, mlflow_uri, prefect_api, artifacts, tmp, logs)
    finally:
        stop(prefect_server)
        stop(mlflow_server)


def test_throwaway_cluster_is_local_password_protected_and_removed_after_a_failure() -> None:
    """The fixture's cluster: 127.0.0.1 only, password over TCP, gone after an error."""
    with pytest.raises(RuntimeError, match="the test failed"), postgres_cluster(("db",)) as pg:
        root = pg.root
        assert pg.sql("db", "show listen_addresses") == [["127.0.0.1"]]
        assert pg.sql("db", "select current_user, current_database()") == [["postgres", "db"]]
        psql = [str(pg.bin_dir / "psql"), "-X", "-A", "-t", "-c", "select current_user"]
        for password, expected in ((pg.password, 0), ("wrong", 2)):
            done = subprocess.run(
                [*psql, pg.url("db")],
                env={**os.environ, "PGPASSWORD": password},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == expected, done.stderr
        assert "password authentication failed" in done.stderr
        raise RuntimeError("the test failed")
    assert not root.exists()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", pg.port)) != 0  # the server is stopped


def served_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_registry_gate_rollback_and_loading_through_the_server(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    name = f"team-{uuid.uuid4().hex[:8]}"
    monkeypatch.chdir(tmp_path)  # a client writing locally would leave mlruns/ here
    monkeypatch.setenv("MLFLOW_TRACKING_URI", services.mlflow_uri)
    client = mlflow.MlflowClient(tracking_uri=services.mlflow_uri)
    experiment = client.create_experiment(f"exp-{name}")  # the server picks the location
    assert client.get_experiment(experiment).artifact_location.startswith("mlflow-artifacts:/")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment)

    data = planted()
    adaptors = train_variants(data, tmp_path / "adaptors")
    before = served_files(services.artifacts) if services.artifacts.exists() else set()

    def register(variant: str) -> str:
        version = register_run_model(
            finished_run(services.mlflow_uri, variant),
            adaptors[variant],
            evaluation_document(data, adaptors[variant]),
            {"git_commit": "0123abc"},
            model_name=name,
        )
        return str(version.version)

    medium = register("medium")
    lenient = RegistryConfig(min_delta_vs_baselines=-1.0)
    assert promote(name, data.evaluation_set(), lenient).action == "promoted"
    good = register("good")
    promoted = promote(name, data.evaluation_set(), RegistryConfig())
    assert promoted.action == "promoted" and promoted.champion_after == good
    worse = register("shuffled")
    assert promote(name, data.evaluation_set(), RegistryConfig()).action == "rejected"
    rolled = rollback(name, int(medium))
    assert rolled.action == "rolled_back" and rolled.champion_before == good

    # load_champion downloads through the server: it serves the rolled-back version.
    model = load_champion(name)
    adaptor, _ = load_adaptor(adaptors["medium"])
    x = data.queries.numpy()
    np.testing.assert_allclose(
        model.predict(x, params={"dim": 8}), adaptor.embed(x, 8).numpy(), atol=1e-6
    )

    # Every artifact landed in the server's destination, none in the client's folders.
    new = served_files(services.artifacts) - before
    assert sum(path.endswith("MLmodel") for path in new) >= 3, sorted(new)[:20]
    assert any(path.endswith("review/report.html") for path in new)
    assert any(path.endswith(f"review/version-{worse}/gate.json") for path in new)
    for local in ("mlruns", "mlartifacts", "mlflow"):
        assert not (tmp_path / local).exists(), f"client wrote {local}/"

    # The registry state, read from PostgreSQL itself.
    pg = services.pg
    (champion,) = pg.sql(
        "mlflow",
        f"select version from registered_model_aliases where name = '{name}' "
        f"and alias = '{CHAMPION}'",
    )
    (challenger,) = pg.sql(
        "mlflow",
        f"select version from registered_model_aliases where name = '{name}' "
        f"and alias = '{CHALLENGER}'",
    )
    assert champion == [medium] and challenger == [worse]
    status = dict(
        pg.sql(
            "mlflow",
            f"select version, value from model_version_tags where name = '{name}' "
            "and key = 'validation_status' order by version",
        )
    )
    assert status == {medium: "passed", good: "passed", worse: "failed"}
    rollback_tag = pg.sql(
        "mlflow",
        f"select value from model_version_tags where name = '{name}' and version = {medium} "
        "and key = 'promotion_reason'",
    )
    assert rollback_tag == [[f"rollback from v{good}"]]


def make_project(root: Path) -> Path:
    """A DVC project with the repo's pipeline definition, tiny data, the local model."""
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


FLOW = """\
import json, sys
from pipelines.retraining import retraining_flow
result = retraining_flow(
    dataset="data/tiny", provider="local", overrides=json.loads(sys.argv[1]), root=sys.argv[2]
)
print(result)
print("RESULT", json.dumps(
    {"run_id": result.run_id, "registered": result.registered, "gate": result.gate}
))
"""


def test_retraining_flow_on_prefect_and_mlflow_servers(services: Services, tmp_path: Path) -> None:
    import mlflow

    project = make_project(tmp_path / "project")
    name = f"flow-{uuid.uuid4().hex[:8]}"
    overrides = {
        **FAST_FLOW,
        "mlflow.experiment_name": f"exp-{name}",
        "mlflow.registered_model_name": name,
    }
    # The client's URI carries a credential (a proxy or basic auth in front of the server).
    with_token = services.mlflow_uri.replace("http://", f"http://team:{CLIENT_TOKEN}@")
    env = subprocess_env(
        MLFLOW_TRACKING_URI=with_token,
        PREFECT_API_URL=services.prefect_api,
        PREFECT_HOME=str(tmp_path / "client-prefect-home"),
    )
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    before = served_files(services.artifacts) if services.artifacts.exists() else set()
    done = subprocess.run(
        [sys.executable, "-c", FLOW, json.dumps(overrides), str(project)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-4000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["registered"] and result["registered"]["new"] is True

    # The flow run is a completed run of the Prefect server, stored in PostgreSQL.
    runs = request_json(
        f"{services.prefect_api}/flow_runs/filter",
        {"flows": {"name": {"any_": ["matryoshka-retraining"]}}},
    )
    assert [run["state"]["type"] for run in runs] == ["COMPLETED"]
    stored = services.pg.sql(
        "prefect", f"select state_type from flow_run where id = '{runs[0]['id']}'"
    )
    assert stored == [["COMPLETED"]]

    # The run and its @challenger are on the MLflow server, artifacts in its destination.
    client = mlflow.MlflowClient(tracking_uri=services.mlflow_uri)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    version = client.get_model_version_by_alias(name, CHALLENGER)
    assert str(version.version) == str(result["registered"]["version"])
    # The flow gated its own challenger (registry.run_mode: enabled) through the server.
    gated = {"promoted": "passed", "rejected": "failed"}[result["gate"]["action"]]
    assert version.tags["validation_status"] == gated
    new = served_files(services.artifacts) - before
    assert any(
        path.endswith(f"{run.info.run_id}/artifacts/evaluation/metrics.json") for path in new
    )
    assert any(path.endswith("MLmodel") for path in new)
    assert not (project / "mlruns").exists() and not (project / "mlflow").exists()

    # Neither secret appears anywhere: output, params, tags, run records, Prefect logs, server logs.
    logs = request_json(
        f"{services.prefect_api}/logs/filter",
        {"logs": {"flow_run_id": {"any_": [runs[0]["id"]]}}, "limit": 200},
    )
    assert any("MLflow run" in entry["message"] for entry in logs)
    texts = {
        "flow output": done.stdout + done.stderr,
        "params and tags": json.dumps([run.data.params, run.data.tags, version.tags]),
        "prefect logs": json.dumps(logs),
    }
    texts |= {
        str(path): path.read_text(errors="replace")
        for path in (*services.logs.values(), *(project / ".matryoshka").rglob("*.json"))
    }
    assert any("***@127.0.0.1" in text for text in texts.values())  # shown, but masked
    for secret in (CLIENT_TOKEN, services.pg.password):
        leaks = {
            where: text[max(text.index(secret) - 200, 0) : text.index(secret) + 50]
            for where, text in texts.items()
            if secret in text
        }
        assert not leaks, f"a secret appears in: {leaks}"
