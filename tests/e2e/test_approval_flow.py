"""End-to-end: the promotion flow in ``approval`` mode on a real (temporary) Prefect API.

The gate passes a planted challenger, the flow run pauses (state ``Paused``) with the gate's
per-dimension summary as the input form's description; the test answers through the
Prefect API (``resume_flow_run(run_input=...)``) as the UI's Resume button does. Without an
answer the pause times out: the version stays ``@challenger`` tagged ``timed_out`` and the
run still ends ``Completed``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.registry import (
    Planted,
    mlflow_store,
    planted,
    register_variant,
    train_variants,
    write_planted_project,
)

import pipelines  # noqa: F401  (project-local Prefect settings before Prefect loads)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def data() -> Planted:
    return planted()


@pytest.fixture(scope="module")
def adaptors(data: Planted, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return train_variants(data, tmp_path_factory.mktemp("adaptors"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_store(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


def start_in_thread(**kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    from pipelines.promotion import promotion_flow

    out: dict[str, Any] = {}

    def target() -> None:
        out["state"] = promotion_flow(**kwargs, return_state=True)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def wait_paused(flow_name: str, timeout: float = 120) -> Any:
    """The newest run of ``flow_name`` once it is Paused."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                sort=FlowRunSort.START_TIME_DESC,
                limit=1,
            )
            if runs and runs[0].state is not None and runs[0].state.is_paused():
                return runs[0]
            time.sleep(0.5)
    raise TimeoutError(f"no paused run of {flow_name} after {timeout} s")


def form_description(flow_run: Any) -> str:
    """What the Prefect UI shows above the Resume form of a paused run."""
    from prefect.input import keyset_from_paused_state, read_flow_run_input

    key = keyset_from_paused_state(flow_run.state)["description"]
    return str(read_flow_run_input(key, flow_run_id=flow_run.id))


def test_promotion_flow_pauses_for_approval_and_times_out_without_answer(
    prefect_api: None, store: str, adaptors: dict[str, Path], data: Planted, tmp_path: Path
) -> None:
    from prefect.flow_runs import resume_flow_run

    import mlflow
    from pipelines.promotion import FLOW_NAME

    c = mlflow.MlflowClient(tracking_uri=store)
    name = "flow-appr"
    params = write_planted_project(
        data,
        tmp_path,
        {"model_name": name, "run_mode": "approval", "min_delta_vs_baselines": -1.0},
    )
    first = register_variant(store, adaptors, data, name, "medium")
    thread, out = start_in_thread(root=str(tmp_path), tracking_uri=store)
    paused = wait_paused(FLOW_NAME)
    assert c.get_model_version(name, first).tags["approval_decision"] == "pending"
    description = form_description(paused)
    assert f"{name} v{first}: gate PASSED" in description and "| 8 |" in description
    resume_flow_run(
        paused.id, run_input={"approve": True, "reviewer": "ana", "comment": "looks right"}
    )
    thread.join(120)
    state = out["state"]
    assert state.is_completed(), state
    result = state.result()
    assert result["action"] == "approved" and result["champion_after"] == first
    assert result["decision"]["passed"] is True
    assert str(c.get_model_version_by_alias(name, "champion").version) == first
    tags = c.get_model_version(name, first).tags
    assert (tags["approval_reviewer"], tags["approval_comment"]) == ("ana", "looks right")

    # No answer within registry.approval_timeout_s: recorded, nothing moves, run completes.
    second = register_variant(store, adaptors, data, name, "good")
    text = params.read_text().replace(
        "run_mode: approval", "run_mode: approval\n  approval_timeout_s: 2"
    )
    params.write_text(text)
    from pipelines.promotion import promotion_flow

    started = time.perf_counter()
    state = promotion_flow(root=str(tmp_path), tracking_uri=store, return_state=True)
    assert state.is_completed(), state
    assert state.result()["action"] == "timed_out"
    assert time.perf_counter() - started < 60
    assert str(c.get_model_version_by_alias(name, "champion").version) == first
    assert str(c.get_model_version_by_alias(name, "challenger").version) == second
    version = c.get_model_version(name, second)
    assert version.tags["approval_decision"] == "timed_out"
    assert "**timed out**" in version.description


def test_embedding_progress_artifact_follows_the_stage_output(prefect_api: None) -> None:
    from prefect import flow, get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from pipelines.artifacts import PROGRESS_KEY, EmbeddingProgress

    lines = [
        "stage embed started (cmd: python -m components.embedding)",
        "2026-12-01 00:00:00,000 INFO components.embedding.progress: corpus: 20/40 texts "
        "(50%), 4.0 texts/s, ETA 0m05s",
        "corpus: 40/40 texts (100%), 4.0 texts/s, ETA 0m00s",
        "queries: 8/16 texts (50%), 4.0 texts/s, ETA 0m02s",
    ]

    @flow(name="progress-probe")
    def probe() -> tuple[list[float], str]:
        progress = EmbeddingProgress()
        seen = []
        for line in lines:
            progress.feed(line)
            seen.append(progress.percent)
        midway = progress.percent
        progress.finish()
        return [*seen, midway], str(progress.artifact_id)

    seen, artifact_id = probe()
    assert seen == [0.0, 25.0, 50.0, 75.0, 75.0]  # each kind counts for half
    with get_client(sync_client=True) as client:
        (artifact,) = [
            a
            for a in client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[PROGRESS_KEY]))
            )
            if str(a.id) == artifact_id
        ]
    assert float(artifact.data) == 100.0 and artifact.type == "progress"
