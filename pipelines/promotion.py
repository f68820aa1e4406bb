"""The promotion flow: the registry's gate as a Prefect task (deployed without a schedule).

A person reads the review report of the new ``@challenger`` in the MLflow UI, then triggers
this flow (``prefect deployment run 'matryoshka-promotion/promote-challenger'``) or runs
``matryoshka promote``. The gate re-evaluates the challenger, ``@champion`` and the
baselines on the frozen evaluation set and moves ``@champion`` only when every counted size
passes (``registry:`` in params.yaml; see docs/registry.md). With ``run_mode=approval`` a
pass pauses this flow run for a person's answer in the Prefect UI, as in the retraining
flow (:mod:`pipelines.approval`).

Example:
    >>> from pipelines.promotion import promotion_flow
    >>> outcome = promotion_flow(run_mode="dry_run")  # doctest: +SKIP
    >>> outcome["action"]  # doctest: +SKIP
    'dry_run'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

FLOW_NAME = "matryoshka-promotion"


@task(name="promotion-gate", cache_policy=NO_CACHE)
def promotion_gate(
    root: str,
    params_file: str = "params.yaml",
    model_name: str | None = None,
    version: int | None = None,
    run_mode: str | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Run :func:`components.registry.promotion` and return its outcome as a dict.

    Raises:
        RuntimeError: the challenger was rejected by an enabled gate (the task fails, so the
            flow run shows ``Failed`` in the Prefect UI with the gate's reasons).
    """
    from components.params import load_params
    from components.registry.approval import gate_markdown
    from components.registry.wiring import gate_from_params, registry_settings

    logger = get_run_logger()
    project = Path(root)
    params = load_params(project / params_file)
    where = {"run_mode": run_mode, "model_name": model_name, "tracking_uri": tracking_uri}
    settings = registry_settings(params, project, **where)
    outcome = gate_from_params(params, project, version=version, **where)
    name = outcome.model_name
    logger.info("%s (%s): %s", name, outcome.action, outcome.message)
    if outcome.decision is not None:
        for check in outcome.decision.checks:
            logger.info(
                "m=%d challenger=%s champion=%s best baseline=%s (%s): %s",
                check.dim,
                check.challenger,
                check.champion,
                check.best_baseline,
                check.best_baseline_method,
                "pass" if check.passed else "FAIL",
            )
    if outcome.action == "rejected":
        raise RuntimeError(f"{name} v{outcome.version} rejected: {outcome.message}")
    result = outcome.to_dict()
    if outcome.action == "awaiting_approval":
        result |= {
            "gate_markdown": gate_markdown(outcome.decision, name, outcome.version),
            "tracking_uri": settings.tracking_uri,
            "approval_timeout_s": settings.config.approval_timeout_s,
        }
    return result


@flow(name=FLOW_NAME, log_prints=True)
def promotion_flow(
    model_name: str | None = None,
    version: int | None = None,
    run_mode: str | None = None,
    root: str | None = None,
    params_file: str = "params.yaml",
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Gate ``version`` (default ``@challenger``) of ``model_name`` against ``@champion``.

    Args:
        model_name: registered model (default: ``registry.model_name`` / mlflow section).
        version: version to gate (default: the ``challenger`` alias).
        run_mode: override of ``registry.run_mode`` (``disabled``, ``dry_run``, ``enabled``,
            ``approval``: a pass pauses the run until a person answers).
        root: project directory with params.yaml and the evaluation embeddings (default: the
            working directory).
        params_file: params file name under ``root``.
        tracking_uri: MLflow store (default: ``MLFLOW_TRACKING_URI``, params, project store).
    """
    project = str(Path(root or os.getcwd()).resolve())
    result = promotion_gate(project, params_file, model_name, version, run_mode, tracking_uri)
    if result["action"] != "awaiting_approval":
        return result
    from pipelines.approval import await_approval

    decided = await_approval(
        result["model_name"],
        str(result["version"]),
        result["champion_before"],
        result["gate_markdown"],
        result["approval_timeout_s"],
        result["tracking_uri"],
    )
    return {**decided.to_dict(), "decision": result["decision"]}
