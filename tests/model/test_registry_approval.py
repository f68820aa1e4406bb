"""``registry.run_mode: approval`` without Prefect: the gate marks a passing challenger
``pending``, :func:`record_approval` acts on a person's answer (approve, reject, timeout),
and ``matryoshka promote`` refuses the mode. A real SQLite MLflow store, planted adaptors."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.registry import (
    TRAINED_DIMS,
    Planted,
    mlflow_store,
    planted,
    register_variant,
    train_variants,
)
from helpers.stages import assert_cli_failure

from components.registry import CHALLENGER, CHAMPION, RegistryConfig, promote
from components.registry.approval import gate_markdown, record_approval
from components.registry.cli import add_registry_commands

# A lenient gate: every challenger that is not worse than the champion passes.
APPROVAL = RegistryConfig(run_mode="approval", min_delta_vs_baselines=-1.0)


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


def client(store: str):  # noqa: ANN201
    import mlflow

    return mlflow.MlflowClient(tracking_uri=store)


def alias(store: str, name: str, which: str) -> str | None:
    aliases = client(store).get_registered_model(name).aliases
    return str(aliases[which]) if which in aliases else None


def test_approval_mode_waits_then_records_approve_reject_and_timeout(
    store: str, adaptors: dict[str, Path], data: Planted
) -> None:
    c = client(store)
    medium = register_variant(store, adaptors, data, "appr", "medium")
    waiting = promote("appr", data.evaluation_set(), APPROVAL)
    assert waiting.action == "awaiting_approval" and waiting.decision.passed
    assert waiting.champion_after is None and alias(store, "appr", CHAMPION) is None
    tags = c.get_model_version("appr", medium).tags
    assert tags["approval_decision"] == "pending" and tags["validation_status"] == "pending"
    summary = gate_markdown(waiting.decision, "appr", medium)
    assert f"appr v{medium}: gate PASSED" in summary
    assert summary.count("| pass |") == len(TRAINED_DIMS)
    before = c.get_model_version("appr", medium).description

    approved = record_approval(
        "appr", medium, "approved", reviewer="ana", comment="better at m=8", tracking_uri=store
    )
    assert approved.action == "approved" and approved.champion_after == medium
    assert alias(store, "appr", CHAMPION) == medium
    version = c.get_model_version("appr", medium)
    assert version.tags["approval_decision"] == "approved"
    assert version.tags["approval_reviewer"] == "ana"
    assert version.tags["approval_comment"] == "better at m=8"
    assert version.tags["approval_at"] and version.tags["validation_status"] == "passed"
    assert version.tags["previous_champion"] == "none"
    # appended: the gate's description stays in front of the approval section
    assert version.description.startswith(before)
    assert "### Approval" in version.description and "**approved** by ana" in version.description
    assert "> better at m=8" in version.description
    with pytest.raises(ValueError, match="not waiting for approval"):
        record_approval("appr", medium, "rejected", reviewer="bob", tracking_uri=store)

    good = register_variant(store, adaptors, data, "appr", "good")
    assert promote("appr", data.evaluation_set(), APPROVAL).action == "awaiting_approval"
    rejected = record_approval(
        "appr", good, "rejected", reviewer="bob", comment="wait for more data", tracking_uri=store
    )
    assert rejected.action == "rejected" and rejected.champion_after == medium
    assert alias(store, "appr", CHAMPION) == medium  # untouched
    tags = c.get_model_version("appr", good).tags
    assert tags["approval_decision"] == "rejected" and tags["approval_reviewer"] == "bob"
    assert tags["validation_status"] == "rejected" and "promoted_at" not in tags

    again = register_variant(store, adaptors, data, "appr", "good")
    assert promote("appr", data.evaluation_set(), APPROVAL).action == "awaiting_approval"
    timed_out = record_approval("appr", again, "timed_out", tracking_uri=store)
    assert timed_out.action == "timed_out" and timed_out.champion_after == medium
    assert alias(store, "appr", CHAMPION) == medium
    assert alias(store, "appr", CHALLENGER) == again
    version = c.get_model_version("appr", again)
    assert version.tags["approval_decision"] == "timed_out"
    assert version.tags["validation_status"] == "pending"
    assert "**timed out**" in version.description

    # A challenger that fails the gate is rejected at once: nobody is asked.
    worse = register_variant(store, adaptors, data, "appr", "shuffled")
    failed = promote("appr", data.evaluation_set(), APPROVAL)
    assert failed.action == "rejected" and failed.exit_code == 1
    tags = c.get_model_version("appr", worse).tags
    assert tags["validation_status"] == "failed" and "approval_decision" not in tags
    assert alias(store, "appr", CHAMPION) == medium


def test_an_approval_after_the_champion_moved_promotes_nothing(
    store: str, adaptors: dict[str, Path], data: Planted
) -> None:
    medium = register_variant(store, adaptors, data, "stale", "medium")
    assert promote("stale", data.evaluation_set(), APPROVAL).action == "awaiting_approval"
    # While a person looks at the form, another version becomes @champion.
    good = register_variant(store, adaptors, data, "stale", "good")
    enabled = RegistryConfig(run_mode="enabled", min_delta_vs_baselines=-1.0)
    assert promote("stale", data.evaluation_set(), enabled).action == "promoted"
    assert alias(store, "stale", CHAMPION) == good

    outcome = record_approval("stale", medium, "approved", reviewer="ana", tracking_uri=store)
    assert outcome.action == "approved_stale" and outcome.champion_after == good
    assert alias(store, "stale", CHAMPION) == good  # the gate never compared medium to good
    version = client(store).get_model_version("stale", medium)
    assert version.tags["approval_gated_against"] == "none"
    assert version.tags["approval_outcome"] == "approved_stale"
    assert version.tags["approval_decision"] == "approved"
    assert version.tags["validation_status"] == "pending"
    assert f"moved from none to v{good}" in version.description


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_registry_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_promote_refuses_approval_mode_and_changes_nothing(
    store: str,
    adaptors: dict[str, Path],
    data: Planted,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    version = register_variant(store, adaptors, data, "cli-appr", "medium")
    params = tmp_path / "params.yaml"
    params.write_text("registry:\n  model_name: cli-appr\n  run_mode: approval\n")
    common = ["--params", str(params), "--tracking-uri", store]
    code = _cli(["promote", *common])
    assert_cli_failure(code, capsys.readouterr().err, 2, "promote: ", "needs a person to approve")
    params.write_text("registry:\n  model_name: cli-appr\n  run_mode: dry_run\n")
    code = _cli(["promote", *common, "--run-mode", "approval"])
    err = capsys.readouterr().err
    assert_cli_failure(code, err, 2, "promote: ", "Prefect UI")
    assert "--run-mode dry_run" in err and "nothing was changed" in err
    tags = client(store).get_model_version("cli-appr", version).tags
    assert tags["validation_status"] == "pending"
    assert "approval_decision" not in tags and "gate_dry_run" not in tags
