"""End-to-end: the gate inside the weekly retraining deployment, on a real Prefect server.

``prefect.yaml`` deployed with ``prefect deploy --all``, a process worker, runs of
``matryoshka-retraining/retraining-weekly`` triggered through the REST API as the schedule
would (the tiny dataset, a new ``method.train.seed`` per run so each registers a version):

* ``run_mode: approval``: the run pauses (state ``Paused``) with the gate's per-dimension
  summary as the form's description; the test answers through the Prefect API
  (``resume_flow_run(run_input=...)``): approve moves ``@champion``, reject leaves it; the
  MLflow version carries decision, reviewer and comment;
* ``run_mode: enabled``: a passing challenger is promoted in its run, a failing one (an
  unreachable ``registry.ndcg_floor``) is kept out;
* every run carries its Prefect artifacts (report, metrics table, embedding progress).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.deployment import (
    Deployed,
    deployed_services,
    make_project,
    service_env,
    wait_state,
)
from helpers.http import free_port
from helpers.stages import FAST_FLOW as FAST

pytestmark = pytest.mark.slow

WEEKLY = "matryoshka-retraining/retraining-weekly"
# Passes whatever the tiny run scores (the gate's mechanics are under test, not the model).
LENIENT = {"registry.min_delta_vs_baselines": -1.0, "registry.min_delta_vs_champion": -1.0}


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("gate-deployment")
    store = tmp / "mlflow"
    store.mkdir()
    env = service_env(tmp, f"http://127.0.0.1:{free_port()}/api", store)
    project = make_project(tmp / "project")
    with deployed_services(tmp, env) as deployed:
        yield {"deployed": deployed, "project": project, "uri": env["MLFLOW_TRACKING_URI"]}


def weekly_run(services: dict[str, Any], model: str, seed: int, **overrides: Any) -> str:
    """Trigger the weekly deployment as its schedule does; the flow run id."""
    deployed: Deployed = services["deployed"]
    return deployed.run_deployment(
        WEEKLY,
        {
            "dataset": "data/tiny",
            "provider": "local",
            "root": str(services["project"]),
            "overrides": {
                **FAST,
                "mlflow.experiment_name": f"gate-{model}",
                "mlflow.registered_model_name": model,
                "method.train.seed": seed,
                **overrides,
            },
        },
    )


def finish(services: dict[str, Any], run_id: str, states: set[str] | None = None) -> dict:
    deployed: Deployed = services["deployed"]
    run = wait_state(deployed.base, run_id, states or set(), 420, deployed.logs["worker"])
    expected = states or {"COMPLETED"}
    assert run["state"]["type"] in expected, (
        run["state"],
        deployed.logs["worker"].read_text()[-4000:],
    )
    return run


def answer(services: dict[str, Any], run: dict, approve: bool, reviewer: str, comment: str) -> str:
    """Send the approval form through the Prefect API; the form's description."""
    from prefect.flow_runs import resume_flow_run
    from prefect.input import keyset_from_paused_state, read_flow_run_input
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import State

    deployed: Deployed = services["deployed"]
    with temporary_settings({PREFECT_API_URL: deployed.base}):
        state = State.model_validate(run["state"])
        key = keyset_from_paused_state(state)["description"]
        description = str(read_flow_run_input(key, flow_run_id=run["id"]))
        resume_flow_run(
            run["id"], run_input={"approve": approve, "reviewer": reviewer, "comment": comment}
        )
    return description


def artifacts(services: dict[str, Any], run_id: str) -> dict[str, list[Any]]:
    """The flow run's artifacts by key, read back through the Prefect API."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings({PREFECT_API_URL: services["deployed"].base}),
        get_client(sync_client=True) as client,
    ):
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    by_key: dict[str, list[Any]] = {}
    for artifact in found:
        by_key.setdefault(str(artifact.key), []).append(artifact)
    return by_key


def mlflow(services: dict[str, Any]):  # noqa: ANN201
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=services["uri"])


def champion(services: dict[str, Any], model: str) -> str | None:
    aliases = mlflow(services).get_registered_model(model).aliases
    return str(aliases["champion"]) if "champion" in aliases else None


def test_approval_pauses_the_weekly_run_then_approve_and_reject(services: dict) -> None:
    model = f"appr-{uuid.uuid4().hex[:6]}"
    approval = {"registry.run_mode": "approval", **LENIENT}
    first = weekly_run(services, model, 0, **approval)
    paused = finish(services, first, {"PAUSED"})
    assert champion(services, model) is None  # nothing moves before a person answers
    description = answer(services, paused, True, "ana", "good enough for m=64")
    assert f"{model} v1: gate PASSED" in description and "| 384 |" in description
    finish(services, first)
    assert champion(services, model) == "1"
    tags = mlflow(services).get_model_version(model, "1").tags
    assert tags["approval_decision"] == "approved" and tags["validation_status"] == "passed"
    assert (tags["approval_reviewer"], tags["approval_comment"]) == ("ana", "good enough for m=64")
    assert "**approved** by ana" in mlflow(services).get_model_version(model, "1").description

    by_key = artifacts(services, first)
    assert {"retraining-report", "retraining-metrics", "embedding-progress"} <= set(by_key)
    reports = [a.data for a in by_key["retraining-report"]]
    final = next(text for text in reports if "# Retraining run" in text)
    assert "v1 approved: @champion none → v1" in final
    assert f"#/models/{model}/versions/1" in final and "/runs/" in final
    assert "| 384 |" in final  # the per-dimension table
    assert any("Waiting for approval" in text for text in reports)
    (table,) = by_key["retraining-metrics"]
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    methods = {row["method"] for row in rows}
    assert {"base", "pca", "adaptor_supervised"} <= methods
    assert {row["dim"] for row in rows} >= {16, 384}
    assert all(0.0 <= row["ndcg_at_10"] <= 1.0 for row in rows)
    (progress,) = by_key["embedding-progress"]
    assert float(progress.data) == 100.0

    second = weekly_run(services, model, 1, **approval)
    paused = finish(services, second, {"PAUSED"})
    answer(services, paused, False, "bob", "wait for the new corpus")
    finish(services, second)
    assert champion(services, model) == "1"  # a rejection leaves @champion where it was
    version = mlflow(services).get_model_version(model, "2")
    assert version.tags["approval_decision"] == "rejected"
    assert version.tags["approval_reviewer"] == "bob"
    assert version.tags["approval_comment"] == "wait for the new corpus"
    assert "> wait for the new corpus" in version.description
    assert str(mlflow(services).get_model_version_by_alias(model, "challenger").version) == "2"


def test_enabled_promotes_a_passing_challenger_and_keeps_a_failing_one_out(
    services: dict,
) -> None:
    model = f"enab-{uuid.uuid4().hex[:6]}"
    first = weekly_run(services, model, 0, **{"registry.run_mode": "enabled", **LENIENT})
    finish(services, first)
    assert champion(services, model) == "1"
    assert mlflow(services).get_model_version(model, "1").tags["validation_status"] == "passed"
    report = artifacts(services, first)["retraining-report"][0].data
    assert "v1 promoted: @champion none → v1" in report

    # Worse: no adaptor reaches an nDCG@10 of 1.0 at every size on the tiny set.
    worse = weekly_run(
        services, model, 1, **{"registry.run_mode": "enabled", "registry.ndcg_floor": 1.0}
    )
    finish(services, worse)  # a rejection is an outcome of the run, not a failure
    assert champion(services, model) == "1"
    version = mlflow(services).get_model_version(model, "2")
    assert version.tags["validation_status"] == "failed"
    report = artifacts(services, worse)["retraining-report"][0].data
    assert "v2 rejected: @champion stays v1" in report
    assert "| FAIL |" in report
